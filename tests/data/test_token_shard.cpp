// Token shards: round trip through the writer and the reader, every malformed-file error names
// the file and the exact problem (malformed files are written by hand, not by the writer), and a
// shard changed on disk while open (truncated, rewritten in place) is a DataError naming the file
// and both sizes on every read, not a SIGBUS; a shard replaced by rename keeps reading what it opened.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

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

  std::vector<uint16_t> window(3);
  moved.read_tokens(2, 3, window.data());
  EXPECT_EQ(window, (std::vector<uint16_t>{2, 65535, 1234}));
  std::vector<uint16_t> scanned;
  moved.scan(1, 6, [&](const uint16_t* t, int64_t n) { scanned.insert(scanned.end(), t, t + n); });
  EXPECT_EQ(scanned, std::vector<uint16_t>(tokens.begin() + 1, tokens.end()));
  expect_error<DataError>([&] { moved.read_tokens(5, 3, window.data()); },
                          {dir.file("a.bin"), "window [5, 5+3) is not inside its 7 tokens"});
  expect_error<DataError>([&] { moved.read_tokens(-1, 1, window.data()); }, {"window [-1, -1+1)"});
}

// A shard of `count` tokens, token i = i % 1000.
std::vector<uint16_t> counting(int64_t count) {
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) tokens[static_cast<size_t>(i)] = static_cast<uint16_t>(i % 1000);
  return tokens;
}

TEST(TokenShard, TruncatedWhileOpenIsADataErrorNamingFileAndSizes) {
  ScratchDir dir("shard_truncated_open");
  const std::string path = dir.file("train_000.bin");
  write_token_shard(path, counting(5000));  // 1024 + 10000 bytes
  TokenShard shard(path);
  std::vector<uint16_t> window(100);
  shard.read_tokens(4000, 100, window.data());
  EXPECT_EQ(window[0], 0);  // 4000 % 1000

  ASSERT_EQ(::truncate(path.c_str(), 1024 + 2 * 1000), 0);  // the shard cut to 1000 tokens underneath
  const std::vector<std::string> what = {"shard '" + path + "'", "changed on disk while in use", "11024 bytes",
                                         "5000 tokens", "now 3024 bytes", "truncated"};
  // Before the cut as well as past it: every read checks the file first.
  expect_error<DataError>([&] { shard.read_tokens(10, 100, window.data()); }, what);
  expect_error<DataError>([&] { shard.read_tokens(4000, 100, window.data()); }, what);
  expect_error<DataError>([&] { shard.max_token(); }, what);
  expect_error<DataError>([&] { shard.scan(0, 0, [](const uint16_t*, int64_t) {}); }, what);
  // Truncated below the header: the same error, no crash.
  ASSERT_EQ(::truncate(path.c_str(), 0), 0);
  expect_error<DataError>([&] { shard.read_tokens(0, 1, window.data()); }, {path, "now 0 bytes", "truncated"});
  // Opening it again is the open-time check.
  expect_error<DataError>([&] { TokenShard again(path); }, {path, "0 bytes, shorter than the 1024-byte header"});
}

TEST(TokenShard, GrownOrRewrittenInPlaceIsADataError) {
  ScratchDir dir("shard_rewritten_open");
  const std::string path = dir.file("s.bin");
  write_token_shard(path, counting(100));
  TokenShard shard(path);
  std::vector<uint16_t> window(10);
  {
    // Same size, other tokens, written in place (no rename), with a modification time that differs
    // from the original whatever the file system's timestamp granularity.
    const int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    const uint16_t other[2] = {7, 7};
    ASSERT_EQ(::pwrite(fd, other, sizeof(other), 1024), static_cast<ssize_t>(sizeof(other)));
    struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
    ASSERT_EQ(::futimens(fd, times), 0);
    ::close(fd);
  }
  expect_error<DataError>([&] { shard.read_tokens(0, 10, window.data()); },
                          {path, "changed on disk while in use", "same size (1224 bytes) but rewritten"});
  TokenShard reopened(path);  // a new open validates the file as it is now
  reopened.read_tokens(0, 2, window.data());
  EXPECT_EQ(window[0], 7);
  {
    std::ofstream append(path, std::ios::binary | std::ios::app);
    append << "xy";
  }
  expect_error<DataError>([&] { reopened.read_tokens(0, 2, window.data()); },
                          {path, "was 1224 bytes", "now 1226 bytes (grown)"});
}

TEST(TokenShard, ReplacedByRenameKeepsReadingTheFileItOpened) {
  // `keel prepare` writes shards atomically (a new file renamed over the old): an open shard keeps
  // the file it validated, unchanged, so a run reading it is not disturbed.
  ScratchDir dir("shard_replaced");
  const std::string path = dir.file("s.bin");
  write_token_shard(path, counting(100));
  TokenShard shard(path);
  write_token_shard(path, std::vector<uint16_t>(10, 9));
  std::vector<uint16_t> window(100);
  shard.read_tokens(0, 100, window.data());
  EXPECT_EQ(window, counting(100));
  EXPECT_EQ(TokenShard(path).num_tokens(), 10);
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
                          {dir.file("version.bin"), "version 2 (uint32 token ids", "not supported"});
  write_text(dir.file("version3.bin"), raw_shard_bytes({20240520, 3, 4}, tokens));
  expect_error<DataError>([&] { TokenShard s(dir.file("version3.bin")); },
                          {dir.file("version3.bin"), "bad version 3 (expected 1)"});

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
