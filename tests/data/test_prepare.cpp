// prepare_dataset end to end on small handmade text files: valid shards and meta.json, a
// deterministic split, re-runs that skip work (no retraining), and readiness checks.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "data/data_loader.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "tests/data/data_test_util.h"

namespace keel {
namespace {

using data_test::expect_error;
using data_test::ScratchDir;

int64_t mtime_ns(const std::string& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec;
}

int64_t count_tokens(const std::vector<std::string>& shards) {
  int64_t total = 0;
  for (const auto& path : shards) total += TokenShard(path).num_tokens();
  return total;
}

PrepareOptions small_options(const ScratchDir& dir, int documents) {
  PrepareOptions options;
  options.use_embedded_corpus = false;
  options.out_dir = dir.file("dataset");
  options.vocab_size = 300;
  options.val_fraction = 0.25;  // every 4th document
  options.shard_tokens = 3000;
  for (int i = 0; i < documents; ++i) {
    const std::string path = dir.file("doc" + std::to_string(i) + ".txt");
    data_test::write_text(path, data_test::english_like_text(60, i));
    options.text_files.push_back(path);
  }
  return options;
}

TEST(Prepare, BuildsValidShardsAndMeta) {
  ScratchDir dir("prepare");
  const PrepareOptions options = small_options(dir, 8);
  EXPECT_FALSE(dataset_ready(options.out_dir));
  const PrepareResult result = prepare_dataset(options);
  EXPECT_TRUE(result.trained_tokenizer);
  EXPECT_FALSE(result.reused_dataset);
  EXPECT_EQ(result.num_documents, 8);
  EXPECT_TRUE(dataset_ready(options.out_dir));
  EXPECT_FALSE(keel::fs::exists(options.out_dir + "/tokenizer_input.txt")) << "training text is cleaned up";

  // Shards: the counts add up, several balanced train shards, every token inside the vocabulary.
  EXPECT_EQ(count_tokens(result.train_shards), result.train_tokens);
  EXPECT_EQ(count_tokens(result.val_shards), result.val_tokens);
  EXPECT_GT(result.train_shards.size(), 1u);
  EXPECT_EQ(glob_shards(options.out_dir, "train_*.bin"), result.train_shards);
  EXPECT_EQ(glob_shards(options.out_dir, "val_*.bin"), result.val_shards);
  for (const auto& path : result.train_shards) {
    EXPECT_LE(TokenShard(path).num_tokens(), options.shard_tokens);
    EXPECT_LT(TokenShard(path).max_token(), result.tokenizer_vocab_size);
  }
  // Documents 0 and 4 (of 8) are validation: about a quarter of the tokens.
  const double val_share = static_cast<double>(result.val_tokens) / (result.val_tokens + result.train_tokens);
  EXPECT_GT(val_share, 0.15);
  EXPECT_LT(val_share, 0.35);

  // Validation holds document 0 then document 4, each followed by EOS, and decodes back exactly.
  Tokenizer tokenizer(result.tokenizer_model);
  std::vector<int> ids;
  for (const auto& path : result.val_shards) {
    TokenShard val(path);
    ids.insert(ids.end(), val.tokens(), val.tokens() + val.num_tokens());
  }
  const auto first_eos = std::find(ids.begin(), ids.end(), result.eos_id);
  ASSERT_NE(first_eos, ids.end());
  EXPECT_EQ(tokenizer.decode(std::vector<int>(ids.begin(), first_eos)), data_test::english_like_text(60, 0));
  EXPECT_EQ(ids.back(), result.eos_id);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), result.eos_id), 2);

  const auto meta = nlohmann::json::parse(keel::fs::read_file(options.out_dir + "/meta.json"));
  EXPECT_EQ(meta.at("vocab_size"), 300);
  EXPECT_EQ(meta.at("train_tokens"), result.train_tokens);
  EXPECT_EQ(meta.at("val_documents"), 2);
  EXPECT_EQ(meta.at("sources").size(), 8u);
  EXPECT_EQ(meta.at("train_shards").at(0).at("file"), "train_000.bin");

  // A loader can read the prepared data and the vocabulary check passes.
  DataLoader loader(result.train_shards, 2, 16);
  EXPECT_NO_THROW(loader.check_vocab(result.tokenizer_vocab_size));
  EXPECT_EQ(loader.next().inputs.size(), 32u);
}

TEST(Prepare, RerunsSkipWorkAndRetrainOnlyForNewInputs) {
  ScratchDir dir("prepare_rerun");
  PrepareOptions options = small_options(dir, 6);
  const PrepareResult first = prepare_dataset(options);
  const std::string model = options.out_dir + "/tokenizer.model";
  const int64_t model_time = mtime_ns(model);
  const int64_t meta_time = mtime_ns(options.out_dir + "/meta.json");

  // Same inputs and settings: nothing is rewritten.
  const PrepareResult again = prepare_dataset(options);
  EXPECT_TRUE(again.reused_dataset);
  EXPECT_FALSE(again.trained_tokenizer);
  EXPECT_EQ(again.train_shards, first.train_shards);
  EXPECT_EQ(again.train_tokens, first.train_tokens);
  EXPECT_EQ(mtime_ns(model), model_time);
  EXPECT_EQ(mtime_ns(options.out_dir + "/meta.json"), meta_time);

  // Another split of the same text: new shards, same tokenizer; stale shards are removed.
  options.val_fraction = 0.5;
  options.shard_tokens = 1000000;
  const PrepareResult resplit = prepare_dataset(options);
  EXPECT_FALSE(resplit.reused_dataset);
  EXPECT_FALSE(resplit.trained_tokenizer);
  EXPECT_EQ(mtime_ns(model), model_time);
  EXPECT_EQ(resplit.train_shards.size(), 1u);
  EXPECT_EQ(glob_shards(options.out_dir, "train_*.bin").size(), 1u);
  EXPECT_EQ(resplit.train_tokens + resplit.val_tokens, first.train_tokens + first.val_tokens);

  // Changed text: the tokenizer is retrained.
  data_test::write_text(options.text_files[2], data_test::english_like_text(50, 99));
  const PrepareResult changed = prepare_dataset(options);
  EXPECT_TRUE(changed.trained_tokenizer);
  EXPECT_TRUE(dataset_ready(options.out_dir));
}

TEST(Prepare, ReadinessNeedsMetaAndEveryShard) {
  ScratchDir dir("prepare_ready");
  const PrepareOptions options = small_options(dir, 4);
  const PrepareResult result = prepare_dataset(options);
  ASSERT_TRUE(dataset_ready(options.out_dir));
  const PrepareResult loaded = load_prepared_dataset(options.out_dir);
  EXPECT_EQ(loaded.train_shards, result.train_shards);
  EXPECT_EQ(loaded.val_tokens, result.val_tokens);

  // A truncated shard is not ready.
  std::string bytes = keel::fs::read_file(result.train_shards.at(0));
  data_test::write_text(result.train_shards.at(0), bytes.substr(0, bytes.size() - 2));
  EXPECT_FALSE(dataset_ready(options.out_dir));
  data_test::write_text(result.train_shards.at(0), bytes);
  EXPECT_TRUE(dataset_ready(options.out_dir));
  // A missing shard or meta.json is not ready; a re-run repairs it.
  keel::fs::remove_all(result.val_shards.at(0));
  EXPECT_FALSE(dataset_ready(options.out_dir));
  EXPECT_FALSE(prepare_dataset(options).reused_dataset);
  EXPECT_TRUE(dataset_ready(options.out_dir));
  keel::fs::remove_all(options.out_dir + "/meta.json");
  EXPECT_FALSE(dataset_ready(options.out_dir));
  expect_error<DataError>([&] { load_prepared_dataset(options.out_dir); }, {"meta.json"});
}

TEST(Prepare, BadOptionsAreErrors) {
  ScratchDir dir("prepare_bad");
  PrepareOptions options = small_options(dir, 2);
  options.vocab_size = 70000;
  expect_error<DataError>([&] { prepare_dataset(options); }, {"vocab_size 70000", "65536"});
  options = small_options(dir, 1);
  expect_error<DataError>([&] { prepare_dataset(options); }, {"at least 2"});
  options = small_options(dir, 2);
  options.text_files.clear();
  expect_error<DataError>([&] { prepare_dataset(options); }, {"nothing to prepare"});
  options = small_options(dir, 2);
  options.use_embedded_corpus = true;
  options.corpus_cache = dir.file("no-cache");
  expect_error<DataError>([&] { prepare_dataset(options); }, {dir.file("no-cache"), "fetch_corpus.sh"});
}

}  // namespace
}  // namespace keel
