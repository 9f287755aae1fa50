// DataLoader: llm.c's sequential layout, determinism, resumable cursors, rank slicing, shard
// switching and epoch wrap, skipping, vocabulary checks, shard globbing, a shard truncated while a
// loader reads it (a DataError naming it) and the evaluation-size check against validation shards.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "data/data_loader.h"
#include "tests/data/data_test_util.h"

namespace keel {
namespace {

using data_test::expect_error;
using data_test::ScratchDir;

// A shard whose token at index i is first + i, so a batch shows where it was read from.
std::string make_counting_shard(const ScratchDir& dir, const std::string& name, int64_t count, uint16_t first) {
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) tokens[static_cast<size_t>(i)] = static_cast<uint16_t>(first + i);
  write_token_shard(dir.file(name), tokens);
  return dir.file(name);
}

std::vector<int32_t> range(int32_t first, int32_t count) {
  std::vector<int32_t> values(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) values[static_cast<size_t>(i)] = first + i;
  return values;
}

TEST(DataLoader, SequentialBatchesWithShiftedTargets) {
  ScratchDir dir("loader_seq");
  const auto shard = make_counting_shard(dir, "a.bin", 100, 0);
  DataLoader loader({shard}, 2, 4);
  TokenBatch first = loader.next();
  EXPECT_EQ(first.batch_size, 2);
  EXPECT_EQ(first.seq_len, 4);
  EXPECT_EQ(first.inputs, range(0, 8));
  EXPECT_EQ(first.targets, range(1, 8));
  TokenBatch second = loader.next();
  EXPECT_EQ(second.inputs, range(8, 8));
  EXPECT_EQ(second.targets, range(9, 8));
  EXPECT_EQ(loader.cursor(), (DataCursor{0, 16, 0}));
}

TEST(DataLoader, TwoLoadersAreIdentical) {
  ScratchDir dir("loader_det");
  const std::vector<std::string> shards = {make_counting_shard(dir, "a.bin", 53, 0),
                                           make_counting_shard(dir, "b.bin", 41, 1000)};
  DataLoader a(shards, 3, 5);
  DataLoader b(shards, 3, 5);
  for (int step = 0; step < 20; ++step) {
    TokenBatch x = a.next();
    TokenBatch y = b.next();
    ASSERT_EQ(x.inputs, y.inputs) << "step " << step;
    ASSERT_EQ(x.targets, y.targets) << "step " << step;
    for (size_t i = 0; i + 1 < x.inputs.size(); ++i) ASSERT_EQ(x.targets[i], x.inputs[i + 1]);
  }
}

TEST(DataLoader, ShardSwitchAndEpochWrap) {
  ScratchDir dir("loader_wrap");
  // Global batch of 8 tokens needs 9 available: shard a (25 tokens) gives batches at 0, 8, 16;
  // shard b (18 tokens) at 0 and 8; then epoch 1 starts again at shard a.
  const std::vector<std::string> shards = {make_counting_shard(dir, "a.bin", 25, 0),
                                           make_counting_shard(dir, "b.bin", 18, 500)};
  DataLoader loader(shards, 2, 4);
  const std::vector<int32_t> starts = {0, 8, 16, 500, 508, 0};
  const std::vector<DataCursor> cursors_after = {{0, 8, 0}, {0, 16, 0}, {1, 0, 0}, {1, 8, 0}, {0, 0, 1}, {0, 8, 1}};
  for (size_t i = 0; i < starts.size(); ++i) {
    TokenBatch batch = loader.next();
    EXPECT_EQ(batch.inputs, range(starts[i], 8)) << "batch " << i;
    EXPECT_EQ(batch.targets, range(starts[i] + 1, 8)) << "batch " << i;
    EXPECT_EQ(loader.cursor(), cursors_after[i]) << "batch " << i;
  }
}

TEST(DataLoader, CursorSaveAndRestoreResumesExactly) {
  ScratchDir dir("loader_resume");
  const std::vector<std::string> shards = {make_counting_shard(dir, "a.bin", 70, 0),
                                           make_counting_shard(dir, "b.bin", 45, 2000)};
  DataLoader original(shards, 2, 3);
  for (int i = 0; i < 7; ++i) original.next();
  const nlohmann::json saved = original.cursor().to_json();
  std::vector<TokenBatch> expected;
  for (int i = 0; i < 12; ++i) expected.push_back(original.next());

  DataLoader resumed(shards, 2, 3);
  resumed.set_cursor(DataCursor::from_json(nlohmann::json::parse(saved.dump())));
  for (int i = 0; i < 12; ++i) {
    TokenBatch batch = resumed.next();
    ASSERT_EQ(batch.inputs, expected[static_cast<size_t>(i)].inputs) << "batch " << i;
    ASSERT_EQ(batch.targets, expected[static_cast<size_t>(i)].targets) << "batch " << i;
  }
  EXPECT_EQ(resumed.cursor(), original.cursor());
}

TEST(DataLoader, RanksSplitTheGlobalBatch) {
  ScratchDir dir("loader_ranks");
  const std::vector<std::string> shards = {make_counting_shard(dir, "a.bin", 150, 0),
                                           make_counting_shard(dir, "b.bin", 97, 3000)};
  const int64_t B = 2, T = 5;
  DataLoader rank0(shards, B, T, 0, 2);
  DataLoader rank1(shards, B, T, 1, 2);
  DataLoader single(shards, 2 * B, T, 0, 1);  // the same global batch, read by one rank
  for (int step = 0; step < 15; ++step) {     // crosses both shards and an epoch
    TokenBatch a = rank0.next();
    TokenBatch b = rank1.next();
    TokenBatch whole = single.next();
    std::vector<int32_t> inputs = a.inputs, targets = a.targets;
    inputs.insert(inputs.end(), b.inputs.begin(), b.inputs.end());
    targets.insert(targets.end(), b.targets.begin(), b.targets.end());
    ASSERT_EQ(inputs, whole.inputs) << "step " << step;
    ASSERT_EQ(targets, whole.targets) << "step " << step;
    ASSERT_EQ(b.inputs.front(), a.inputs.back() + 1) << "rank 1 continues where rank 0 ends";
    ASSERT_EQ(rank0.cursor(), rank1.cursor());
    ASSERT_EQ(rank0.cursor(), single.cursor());
  }
  EXPECT_EQ(rank0.cursor().epoch, 1);
}

TEST(DataLoader, SkipEqualsReadAndDiscard) {
  ScratchDir dir("loader_skip");
  const std::vector<std::string> shards = {make_counting_shard(dir, "a.bin", 61, 0),
                                           make_counting_shard(dir, "b.bin", 33, 700)};
  for (int64_t n : {0, 1, 5, 17}) {
    DataLoader reader(shards, 2, 4, 1, 2);
    DataLoader skipper(shards, 2, 4, 1, 2);
    for (int64_t i = 0; i < n; ++i) reader.next();
    skipper.skip_batches(n);
    EXPECT_EQ(skipper.cursor(), reader.cursor()) << "n=" << n;
    EXPECT_EQ(skipper.next().inputs, reader.next().inputs) << "n=" << n;
  }
  DataLoader loader(shards, 2, 4);
  expect_error<DataError>([&] { loader.skip_batches(-1); }, {"negative"});
}

TEST(DataLoader, BadCursorsAreRejected) {
  ScratchDir dir("loader_badcursor");
  const std::vector<std::string> shards = {make_counting_shard(dir, "a.bin", 40, 0),
                                           make_counting_shard(dir, "b.bin", 40, 100)};
  DataLoader loader(shards, 2, 4);
  expect_error<DataError>([&] { loader.set_cursor({2, 0, 0}); }, {"shard_index 2", "[0, 2)"});
  expect_error<DataError>([&] { loader.set_cursor({0, 41, 0}); }, {"position 41", "a.bin"});
  expect_error<DataError>([&] { loader.set_cursor({0, -1, 0}); }, {"position -1"});
  expect_error<DataError>([&] { loader.set_cursor({0, 0, -3}); }, {"epoch -3"});
  // Too close to the end for a whole batch (e.g. resumed with a bigger batch): moves on.
  loader.set_cursor({1, 35, 4});
  EXPECT_EQ(loader.cursor(), (DataCursor{0, 0, 5}));
  expect_error<DataError>([] { DataCursor::from_json({{"shard_index", 0}, {"position", 1}}); }, {"epoch"});
  expect_error<DataError>(
      [] {
        DataCursor::from_json({{"shard_index", 0}, {"position", "x"}, {"epoch", 0}});
      },
      {"position", "integer"});
}

TEST(DataLoader, ConstructionErrors) {
  ScratchDir dir("loader_ctor");
  const auto big = make_counting_shard(dir, "big.bin", 100, 0);
  const auto small = make_counting_shard(dir, "small.bin", 16, 0);
  expect_error<DataError>([&] { DataLoader l({big, small}, 2, 8); }, {"small.bin", "16 tokens", "17"});
  expect_error<DataError>([&] { DataLoader l({}, 2, 8); }, {"no shards"});
  expect_error<DataError>([&] { DataLoader l({big}, 0, 8); }, {"batch_size"});
  expect_error<DataError>([&] { DataLoader l({big}, 2, 8, 2, 2); }, {"rank 2"});
}

TEST(DataLoader, VocabCheckNamesShard) {
  ScratchDir dir("loader_vocab");
  const auto low = make_counting_shard(dir, "low.bin", 50, 0);      // max 49
  const auto high = make_counting_shard(dir, "high.bin", 50, 451);  // max 500
  DataLoader loader({low, high}, 2, 4);
  EXPECT_NO_THROW(loader.check_vocab(501));
  expect_error<DataError>([&] { loader.check_vocab(500); }, {"high.bin", "500", "model.vocab_size = 500", "at least 501"});
}

TEST(DataLoader, ShardTruncatedWhileReadingIsADataErrorNamingIt) {
  ScratchDir dir("loader_truncated");
  const auto first = make_counting_shard(dir, "train_000.bin", 400, 0);
  const auto second = make_counting_shard(dir, "train_001.bin", 400, 1000);
  DataLoader loader({first, second}, 2, 8);
  loader.next();
  loader.next();
  ASSERT_EQ(::truncate(second.c_str(), 1024 + 2 * 10), 0);  // the shard not being read yet
  loader.next();  // the first shard is intact
  ASSERT_EQ(::truncate(first.c_str(), 1024 + 2 * 300), 0);  // the shard being read, past the cursor
  expect_error<DataError>([&] { loader.next(); },
                          {"shard '" + first + "'", "1824 bytes (400 tokens) when opened", "now 1624 bytes", "truncated"});
  // Skipping to the second shard finds it truncated too.
  loader.set_cursor(DataCursor{1, 0, 0});
  expect_error<DataError>([&] { loader.next(); }, {second, "now 1044 bytes"});
}

TEST(DataLoader, BatchesPerPassCountsWholeGlobalBatches) {
  ScratchDir dir("loader_pass");
  // 1001 tokens: batches at 0, 8, ..., 992 (each needs 8 + 1 tokens): 125 of them.
  const auto a = make_counting_shard(dir, "a.bin", 1001, 0);
  const auto b = make_counting_shard(dir, "b.bin", 100, 0);  // (100 - 1) / 8 = 12
  EXPECT_EQ(DataLoader({a}, 2, 4).batches_per_pass(), 125);
  EXPECT_EQ(DataLoader({a, b}, 2, 4).batches_per_pass(), 137);
  EXPECT_EQ(DataLoader({a, b}, 2, 4, 1, 2).batches_per_pass(), 62 + 6);
  // The count is what reading gives before the epoch wraps.
  DataLoader loader({a, b}, 2, 4);
  for (int i = 0; i < 137; ++i) loader.next();
  EXPECT_EQ(loader.cursor(), (DataCursor{0, 0, 1}));
}

TEST(DataLoader, EvalBatchesAreCutToTheValidationShards) {
  ScratchDir dir("loader_eval_fit");
  const auto val = make_counting_shard(dir, "val_000.bin", 1001, 0);
  std::string warning;
  EXPECT_EQ(eval_batches_that_fit({val}, 125, 2, 4, 1, &warning), 125);  // (1001 - 1) / 8
  EXPECT_EQ(warning, "");
  EXPECT_EQ(eval_batches_that_fit({val}, 62, 2, 4, 2, &warning), 62);    // (1001 - 1) / 16
  EXPECT_EQ(eval_batches_that_fit({val}, 126, 2, 4, 1, &warning), 125);
  for (const std::string& needle : std::vector<std::string>{"train.eval_batches = 126", "batches of 8 tokens", "'" + val + "'", "1 shard)",
                                   "hold 1001 tokens", "at most train.eval_batches = 125 fits", "evaluating 125 batches"})
    EXPECT_NE(warning.find(needle), std::string::npos) << needle << "\n" << warning;
  EXPECT_EQ(eval_batches_that_fit({val}, 1000000000, 2, 4, 2, &warning), 62);
  EXPECT_NE(warning.find("parallel.dp 2 x train.batch_size 2 x seq_len 4"), std::string::npos) << warning;
  // A validation shard smaller than one batch is the loader's DataError, named.
  const auto tiny = make_counting_shard(dir, "val_001.bin", 5, 0);
  expect_error<DataError>([&] { eval_batches_that_fit({val, tiny}, 1, 2, 4, 1); }, {"val_001.bin", "5 tokens"});
}

TEST(GlobShards, SortedMatchesAndClearErrors) {
  ScratchDir dir("glob");
  for (const char* name : {"train_002.bin", "train_000.bin", "val_000.bin", "train_001.bin", "notes.txt"}) {
    data_test::write_text(dir.file(name), "x");
  }
  keel::fs::make_dirs(dir.file("train_dir.bin"));  // folders never match
  EXPECT_EQ(
      glob_shards(dir.path(), "train_*.bin"),
      (std::vector<std::string>{dir.file("train_000.bin"), dir.file("train_001.bin"), dir.file("train_002.bin")}));
  EXPECT_EQ(glob_shards(dir.path(), "val_*.bin"), std::vector<std::string>{dir.file("val_000.bin")});
  expect_error<DataError>([&] { glob_shards(dir.path(), "test_*.bin"); }, {dir.path(), "test_*.bin"});
  expect_error<DataError>([&] { glob_shards(dir.file("nope"), "train_*.bin"); }, {dir.file("nope"), "does not exist"});
}

}  // namespace
}  // namespace keel
