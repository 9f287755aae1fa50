// CheckpointStore: atomic commit, replacing a step, resume skipping damaged checkpoints, cleanup of
// uncommitted and crashed saves, and pruning with protected steps.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_store.h"
#include "checkpoint/safetensors.h"
#include "tests/checkpoint/test_util.h"

namespace keel::checkpoint {
namespace {

using testutil::ScratchDir;

// Commits a small checkpoint for `step` whose weights hold `value`.
std::string save(CheckpointStore& store, int64_t step, float value = 1.f) {
  PendingCheckpoint pending = store.begin(step);
  const std::vector<float> weights(64, value);
  write_safetensors(pending.file("model.safetensors"),
                    {TensorView{"w", DType::F32, {8, 8}, weights.data(), weights.size() * 4}},
                    {{"step", std::to_string(step)}});
  const std::string state = "{\"step\": " + std::to_string(step) + "}";
  keel::fs::write_file_durable(pending.file("trainer_state.json"), state.data(), state.size());
  return store.commit(std::move(pending), {{"loss", 3.0}});
}

TEST(CheckpointStore, DirNameAndPath) {
  ScratchDir dir;
  CheckpointStore store(dir / "ckpts");
  EXPECT_TRUE(keel::fs::exists(dir / "ckpts"));
  EXPECT_EQ(CheckpointStore::dir_name(42), "step_00000042");
  EXPECT_EQ(CheckpointStore::dir_name(123456789), "step_123456789");
  EXPECT_EQ(store.path_of(7), dir / "ckpts/step_00000007");
  EXPECT_THROW(CheckpointStore::dir_name(-1), keel::KeelError);
}

TEST(CheckpointStore, CommitProducesFinalFolderAndNoTemporary) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  PendingCheckpoint pending = store.begin(42);
  EXPECT_EQ(pending.dir().find(dir.path() + "/.tmp-step_00000042-"), 0u) << pending.dir();
  EXPECT_TRUE(keel::fs::exists(pending.dir()));
  EXPECT_TRUE(store.list_steps().empty()) << "a save in progress is not listed";
  const std::string text = "hello";
  keel::fs::write_file_durable(pending.file("a.txt"), text.data(), text.size());
  const std::string final_dir = store.commit(std::move(pending), {{"tokens", 1000}});
  EXPECT_FALSE(pending.active());

  EXPECT_EQ(final_dir, store.path_of(42));
  EXPECT_EQ(keel::fs::list_dir(dir.path()), std::vector<std::string>{"step_00000042"});
  EXPECT_EQ(keel::fs::list_dir(final_dir), (std::vector<std::string>{"a.txt", "manifest.json"}));
  Manifest m = read_manifest(final_dir);
  EXPECT_EQ(m.step, 42);
  ASSERT_EQ(m.files.size(), 1u);
  EXPECT_EQ(m.info.at("tokens"), 1000);
  EXPECT_TRUE(store.verify(42).ok);
  EXPECT_EQ(store.list_steps(), std::vector<int64_t>{42});
  EXPECT_EQ(store.latest_valid(), 42);
}

TEST(CheckpointStore, CommitReplacesSameStep) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  save(store, 5, 1.f);
  save(store, 5, 2.f);
  EXPECT_EQ(keel::fs::list_dir(dir.path()), std::vector<std::string>{"step_00000005"}) << "old copy deleted";
  SafetensorsFile file(store.path_of(5) + "/model.safetensors");
  float first = 0;
  std::memcpy(&first, file.view("w").data, 4);
  EXPECT_EQ(first, 2.f);
  EXPECT_TRUE(store.verify(5).ok);
}

TEST(CheckpointStore, EmptyOrDoubleCommitIsAnError) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  PendingCheckpoint pending = store.begin(1);
  EXPECT_THROW(store.commit(std::move(pending)), keel::KeelError) << "no files";
  EXPECT_TRUE(store.list_steps().empty());
  EXPECT_TRUE(pending.active()) << "a failed commit leaves the save to its owner";
  pending.abandon();
  EXPECT_FALSE(pending.active());
  EXPECT_TRUE(keel::fs::list_dir(dir.path()).empty());
  EXPECT_THROW(store.commit(std::move(pending)), keel::KeelError);
}

TEST(CheckpointStore, LatestValidSkipsCorruptedNewest) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  save(store, 100);
  save(store, 200);
  save(store, 300);
  testutil::flip_byte(store.path_of(300) + "/model.safetensors");
  std::vector<std::string> rejected;
  EXPECT_EQ(store.latest_valid(&rejected), 200);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].find("step 300: model.safetensors: crc32 mismatch"), 0u) << rejected[0];

  testutil::truncate_by(store.path_of(200) + "/trainer_state.json", 1);
  rejected.clear();
  EXPECT_EQ(store.latest_valid(&rejected), 100);
  ASSERT_EQ(rejected.size(), 2u);
  EXPECT_NE(rejected[1].find("step 200: trainer_state.json: size"), std::string::npos) << rejected[1];
  EXPECT_EQ(store.list_steps(), (std::vector<int64_t>{100, 200, 300})) << "list_steps does not verify";
}

TEST(CheckpointStore, FolderWithoutManifestIsNotValid) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  save(store, 1);
  keel::fs::make_dirs(store.path_of(9));
  testutil::write_bytes(store.path_of(9) + "/model.safetensors", "partial");
  std::vector<std::string> rejected;
  EXPECT_EQ(store.latest_valid(&rejected), 1);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0], "step 9: manifest.json missing");
  EXPECT_FALSE(store.verify(9).ok);
  EXPECT_FALSE(store.verify(77).ok) << "no folder at all";

  // A manifest copied from another step does not pass for this one.
  keel::fs::remove_all(store.path_of(9));
  std::filesystem::copy(store.path_of(1), store.path_of(9));
  EXPECT_NE(store.verify(9).problem.find("step 1 != folder step 9"), std::string::npos);
  EXPECT_EQ(store.latest_valid(), 1);
}

TEST(CheckpointStore, NoValidCheckpoint) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  EXPECT_FALSE(store.latest_valid().has_value());
  keel::fs::make_dirs(store.path_of(3));
  EXPECT_FALSE(store.latest_valid().has_value());
}

TEST(CheckpointStore, UncommittedPendingLeavesNothing) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  {
    PendingCheckpoint pending = store.begin(8);
    testutil::write_bytes(pending.file("model.safetensors"), "bytes");
    PendingCheckpoint moved = std::move(pending);
    EXPECT_FALSE(pending.active());
    EXPECT_TRUE(moved.active());
    EXPECT_EQ(keel::fs::list_dir(dir.path()).size(), 1u);
  }
  EXPECT_TRUE(keel::fs::list_dir(dir.path()).empty());
  EXPECT_TRUE(store.list_steps().empty());
}

TEST(CheckpointStore, CrashLeftoversIgnoredAndRemoved) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  save(store, 3);
  // A crashed save (complete with manifest, even), stray names, and a live save of this process.
  keel::fs::make_dirs(dir / ".tmp-step_00000007-999-0");
  testutil::write_bytes(dir / ".tmp-step_00000007-999-0/model.safetensors", "half written");
  keel::fs::make_dirs(dir / "step_12");
  keel::fs::make_dirs(dir / "step_0000000x");
  testutil::write_bytes(dir / "step_00000004", "a file, not a folder");
  PendingCheckpoint live = store.begin(9);

  EXPECT_EQ(store.list_steps(), std::vector<int64_t>{3});
  EXPECT_EQ(store.latest_valid(), 3);
  store.remove_stale_temporaries();
  EXPECT_FALSE(keel::fs::exists(dir / ".tmp-step_00000007-999-0"));
  EXPECT_TRUE(keel::fs::exists(live.dir())) << "a live save of this process is kept";
  EXPECT_TRUE(keel::fs::exists(store.path_of(3)));
  EXPECT_TRUE(keel::fs::exists(dir / "step_12")) << "names the store does not own are left alone";
}

TEST(CheckpointStore, InterruptedReplacementIsRestored) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  save(store, 4);
  // Crash after the old copy was moved aside, before the new one was renamed in.
  keel::fs::rename_durable(store.path_of(4), dir / ".old-step_00000004-1-0");
  keel::fs::make_dirs(dir / ".tmp-step_00000004-1-1");
  EXPECT_TRUE(store.list_steps().empty());
  store.remove_stale_temporaries();
  EXPECT_EQ(keel::fs::list_dir(dir.path()), std::vector<std::string>{"step_00000004"});
  EXPECT_TRUE(store.verify(4).ok);

  // With the final folder present, the .old copy is just removed.
  keel::fs::make_dirs(dir / ".old-step_00000004-1-2");
  store.remove_stale_temporaries();
  EXPECT_EQ(keel::fs::list_dir(dir.path()), std::vector<std::string>{"step_00000004"});
}

TEST(CheckpointStore, PruneKeepsNewestAndProtected) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  for (int64_t step = 1; step <= 6; ++step) save(store, step * 10);
  store.prune(2, {20});
  EXPECT_EQ(store.list_steps(), (std::vector<int64_t>{20, 50, 60}));
  store.prune(2, {20, 999});
  EXPECT_EQ(store.list_steps(), (std::vector<int64_t>{20, 50, 60}));
  store.prune(0, {50});
  EXPECT_EQ(store.list_steps(), std::vector<int64_t>{50});
  EXPECT_THROW(store.prune(-1), keel::KeelError);
}

TEST(CheckpointStore, PruneDoesNotCountIncompleteCheckpoints) {
  ScratchDir dir;
  CheckpointStore store(dir.path());
  save(store, 1);
  save(store, 2);
  keel::fs::make_dirs(store.path_of(3));  // no manifest: would otherwise push out step 2
  store.prune(1);
  EXPECT_EQ(store.list_steps(), std::vector<int64_t>{2});
  EXPECT_EQ(store.latest_valid(), 2);
}

}  // namespace
}  // namespace keel::checkpoint
