// manifest.json: build/write/read round trip, strict parsing, and verification catching a flipped
// byte, a truncated file, a missing file and a missing or foreign manifest.
#include <gtest/gtest.h>

#include <string>

#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "tests/checkpoint/test_util.h"

namespace keel::checkpoint {
namespace {

using testutil::ScratchDir;

// A checkpoint folder with two files and its manifest.
void make_checkpoint(const std::string& dir, int64_t step) {
  testutil::write_bytes(dir + "/model.safetensors", std::string(1000, 'm') + "tail");
  keel::fs::make_dirs(dir + "/opt");
  testutil::write_bytes(dir + "/opt/rank0.bin", "optimizer state");
  write_manifest(dir, build_manifest(dir, step, {"model.safetensors", "opt/rank0.bin"}, {{"loss", 2.5}}));
}

TEST(Manifest, BuildWriteReadRoundTrip) {
  ScratchDir dir;
  make_checkpoint(dir.path(), 42);
  Manifest m = read_manifest(dir.path());
  EXPECT_EQ(m.format, "keel-checkpoint");
  EXPECT_EQ(m.version, 1);
  EXPECT_EQ(m.step, 42);
  EXPECT_GT(m.created_unix, 1600000000);
  ASSERT_EQ(m.files.size(), 2u);
  EXPECT_EQ(m.files[0].name, "model.safetensors");
  EXPECT_EQ(m.files[0].size, 1004u);
  const std::string model = keel::fs::read_file(dir / "model.safetensors");
  EXPECT_EQ(m.files[0].crc32, keel::fs::crc32(model.data(), model.size()));
  EXPECT_EQ(m.files[1].name, "opt/rank0.bin");
  EXPECT_DOUBLE_EQ(m.info.at("loss").get<double>(), 2.5);

  // The on-disk text has the documented shape (crc32 as 8 lowercase hex digits).
  auto j = nlohmann::json::parse(keel::fs::read_file(dir / "manifest.json"));
  const std::string crc = j["files"][0]["crc32"];
  EXPECT_EQ(crc.size(), 8u);
  EXPECT_EQ(crc.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(j["format"], "keel-checkpoint");
  EXPECT_TRUE(verify_checkpoint(dir.path()).ok);
  EXPECT_TRUE(verify_checkpoint(dir.path(), VerifyLevel::kFull, 42).ok);
  EXPECT_FALSE(verify_checkpoint(dir.path(), VerifyLevel::kFull, 43).ok);
}

TEST(Manifest, BuildRejectsBadNames) {
  ScratchDir dir;
  testutil::write_bytes(dir / "a", "x");
  EXPECT_THROW(build_manifest(dir.path(), 1, {"a", "a"}), keel::KeelError);
  EXPECT_THROW(build_manifest(dir.path(), 1, {"../a"}), keel::KeelError);
  EXPECT_THROW(build_manifest(dir.path(), 1, {"/etc/passwd"}), keel::KeelError);
  EXPECT_THROW(build_manifest(dir.path(), 1, {"missing"}), keel::KeelError);
  EXPECT_THROW(build_manifest(dir.path(), 1, {"a"}, nlohmann::json::array()), keel::KeelError);
}

TEST(Manifest, VerifyCatchesFlippedByte) {
  ScratchDir dir;
  make_checkpoint(dir.path(), 1);
  testutil::flip_byte(dir / "model.safetensors");
  VerifyResult r = verify_checkpoint(dir.path());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("model.safetensors: crc32 mismatch"), std::string::npos) << r.problem;
  EXPECT_TRUE(verify_checkpoint(dir.path(), VerifyLevel::kSizes).ok) << "size-only check cannot see it";
}

TEST(Manifest, VerifyCatchesTruncationAndMissingFile) {
  ScratchDir dir;
  make_checkpoint(dir.path(), 1);
  testutil::truncate_by(dir / "model.safetensors", 4);
  VerifyResult r = verify_checkpoint(dir.path(), VerifyLevel::kSizes);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.problem, "model.safetensors: size 1000 != manifest 1004");
  keel::fs::remove_all(dir / "opt");
  testutil::write_bytes(dir / "model.safetensors", std::string(1000, 'm') + "tail");
  r = verify_checkpoint(dir.path());
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.problem, "opt/rank0.bin: missing");
}

TEST(Manifest, MissingOrForeignManifest) {
  ScratchDir dir;
  VerifyResult r = verify_checkpoint(dir.path());
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.problem, "manifest.json missing");
  try {
    read_manifest(dir.path());
    FAIL() << "no error";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("manifest.json missing"), std::string::npos) << e.what();
  }

  make_checkpoint(dir.path(), 3);
  auto j = nlohmann::json::parse(keel::fs::read_file(dir / "manifest.json"));
  auto rewrite = [&](const nlohmann::json& value) { testutil::write_bytes(dir / "manifest.json", value.dump()); };

  auto bad = j;
  bad["format"] = "something-else";
  rewrite(bad);
  r = verify_checkpoint(dir.path());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("unexpected format"), std::string::npos) << r.problem;
  EXPECT_THROW(read_manifest(dir.path()), CheckpointError);

  bad = j;
  bad["version"] = 2;
  rewrite(bad);
  EXPECT_NE(verify_checkpoint(dir.path()).problem.find("unsupported version 2"), std::string::npos);

  bad = j;
  bad["files"][0]["crc32"] = "XYZ";
  rewrite(bad);
  EXPECT_NE(verify_checkpoint(dir.path()).problem.find("bad crc32"), std::string::npos);

  bad = j;
  bad["files"][0].erase("size");
  rewrite(bad);
  EXPECT_NE(verify_checkpoint(dir.path()).problem.find("files[0]: missing \"size\""), std::string::npos);

  bad = j;
  bad["files"][1]["name"] = "../escape";
  rewrite(bad);
  EXPECT_NE(verify_checkpoint(dir.path()).problem.find("bad file name"), std::string::npos);

  testutil::write_bytes(dir / "manifest.json", "{\"format\": ");
  r = verify_checkpoint(dir.path());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.problem.find("not valid JSON"), std::string::npos) << r.problem;

  rewrite(j);
  EXPECT_TRUE(verify_checkpoint(dir.path()).ok);
}

}  // namespace
}  // namespace keel::checkpoint
