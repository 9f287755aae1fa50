// Token shards: round trip through the writer and mmap reader, and every malformed-file error
// names the file and the exact problem. Malformed files are written by hand, not by the writer.
#include <gtest/gtest.h>

#include "data/token_shard.h"
#include "tests/data/data_test_util.h"

namespace keel {
namespace {

using data_test::expect_error;
using data_test::raw_shard_bytes;
using data_test::ScratchDir;
using data_test::write_text;

TEST(TokenShard, RoundTrip) {
  ScratchDir dir("shard_roundtrip");
  std::vector<uint16_t> tokens = {0, 1, 2, 65535, 1234, 7, 40000};
  write_token_shard(dir.file("a.bin"), tokens);
  EXPECT_EQ(keel::fs::file_size(dir.file("a.bin")), 1024u + 2 * tokens.size());
  // The writer's bytes are exactly llm.c's layout.
  EXPECT_EQ(keel::fs::read_file(dir.file("a.bin")), raw_shard_bytes({20240520, 1, 7}, tokens));

  TokenShard shard(dir.file("a.bin"));
  EXPECT_EQ(shard.path(), dir.file("a.bin"));
  ASSERT_EQ(shard.num_tokens(), 7);
  EXPECT_EQ(std::vector<uint16_t>(shard.tokens(), shard.tokens() + 7), tokens);
  EXPECT_EQ(shard.max_token(), 65535);

  TokenShard moved(std::move(shard));
  EXPECT_EQ(moved.num_tokens(), 7);
  EXPECT_EQ(moved.tokens()[3], 65535);
  EXPECT_EQ(shard.tokens(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
}

TEST(TokenShard, EmptyShardIsValid) {
  ScratchDir dir("shard_empty");
  write_token_shard(dir.file("e.bin"), {});
  TokenShard shard(dir.file("e.bin"));
  EXPECT_EQ(shard.num_tokens(), 0);
  EXPECT_EQ(shard.max_token(), 0);
}

TEST(TokenShard, MalformedFilesNameFileAndProblem) {
  ScratchDir dir("shard_bad");
  const std::vector<uint16_t> tokens = {1, 2, 3, 4};

  write_text(dir.file("magic.bin"), raw_shard_bytes({12345, 1, 4}, tokens));
  expect_error<DataError>([&] { TokenShard s(dir.file("magic.bin")); },
                          {"shard '" + dir.file("magic.bin") + "'", "bad magic 12345 (expected 20240520)"});

  write_text(dir.file("version.bin"), raw_shard_bytes({20240520, 2, 4}, tokens));
  expect_error<DataError>([&] { TokenShard s(dir.file("version.bin")); },
                          {dir.file("version.bin"), "bad version 2 (expected 1)"});

  std::string truncated = raw_shard_bytes({20240520, 1, 4}, tokens);
  truncated.resize(truncated.size() - 3);
  write_text(dir.file("truncated.bin"), truncated);
  expect_error<DataError>([&] { TokenShard s(dir.file("truncated.bin")); },
                          {dir.file("truncated.bin"), "truncated", "4 tokens", "1032 bytes", "1029 bytes"});

  write_text(dir.file("trailing.bin"), raw_shard_bytes({20240520, 1, 4}, tokens) + "xy");
  expect_error<DataError>([&] { TokenShard s(dir.file("trailing.bin")); },
                          {dir.file("trailing.bin"), "trailing bytes", "1034 bytes"});

  write_text(dir.file("short.bin"), std::string(100, '\0'));
  expect_error<DataError>([&] { TokenShard s(dir.file("short.bin")); },
                          {dir.file("short.bin"), "100 bytes", "shorter than the 1024-byte header"});

  write_text(dir.file("negative.bin"), raw_shard_bytes({20240520, 1, -5}, {}));
  expect_error<DataError>([&] { TokenShard s(dir.file("negative.bin")); }, {"negative token count -5"});

  expect_error<DataError>([&] { TokenShard s(dir.file("missing.bin")); }, {dir.file("missing.bin"), "cannot open"});
  // DataError is a KeelError, so generic handlers catch it.
  EXPECT_THROW(TokenShard(dir.file("magic.bin")), keel::KeelError);
}

}  // namespace
}  // namespace keel
