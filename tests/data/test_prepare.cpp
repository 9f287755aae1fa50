// prepare_dataset end to end on small handmade text files: valid shards and meta.json, a
// deterministic split, the seeded document shuffle (every document once, the same order for a
// seed on every standard library), the recorded unigram entropy, re-runs that skip work (no
// retraining), and readiness checks.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <numeric>

#include "data/data_loader.h"
#include "data/prepare.h"
#include "data/token_statistics.h"
#include "data/text_tokenizer.h"
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

// Every token of the shards, in order.
std::vector<int> read_tokens(const std::vector<std::string>& shards) {
  std::vector<int> ids;
  for (const auto& path : shards) {
    TokenShard shard(path);
    ids.insert(ids.end(), shard.tokens(), shard.tokens() + shard.num_tokens());
  }
  return ids;
}

// The documents of the shards (each ends with EOS), decoded; nothing may follow the last EOS.
std::vector<std::string> read_documents(const PrepareResult& result, const std::vector<std::string>& shards) {
  Tokenizer tokenizer(result.tokenizer_model);
  const std::vector<int> ids = read_tokens(shards);
  std::vector<std::string> documents;
  auto begin = ids.begin();
  for (auto eos = std::find(begin, ids.end(), result.eos_id); eos != ids.end();
       eos = std::find(begin, ids.end(), result.eos_id)) {
    documents.push_back(tokenizer.decode(std::vector<int>(begin, eos)));
    begin = eos + 1;
  }
  EXPECT_TRUE(begin == ids.end()) << "tokens after the last EOS";
  return documents;
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
  // The documents at shuffled positions 0 and 4 (of 8) are validation: about a quarter of the tokens.
  const double val_share = static_cast<double>(result.val_tokens) / (result.val_tokens + result.train_tokens);
  EXPECT_GT(val_share, 0.15);
  EXPECT_LT(val_share, 0.35);

  // Validation holds those two documents, each followed by EOS, and decodes back exactly.
  const std::vector<int64_t> order = document_order(8, options.shuffle_seed);
  const std::vector<int> ids = read_tokens(result.val_shards);
  EXPECT_EQ(ids.back(), result.eos_id);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), result.eos_id), 2);
  EXPECT_EQ(read_documents(result, result.val_shards),
            (std::vector<std::string>{data_test::english_like_text(60, static_cast<int>(order[0])),
                                      data_test::english_like_text(60, static_cast<int>(order[4]))}));

  const auto meta = nlohmann::json::parse(keel::fs::read_file(options.out_dir + "/meta.json"));
  EXPECT_EQ(meta.at("vocab_size"), 300);
  EXPECT_EQ(meta.at("train_tokens"), result.train_tokens);
  EXPECT_EQ(meta.at("val_documents"), 2);
  EXPECT_EQ(meta.at("sources").size(), 8u);
  EXPECT_EQ(meta.at("train_shards").at(0).at("file"), "train_000.bin");
  EXPECT_EQ(meta.at("shuffle_seed"), 1234);
  EXPECT_EQ(meta.at("eos_id"), result.eos_id);
  EXPECT_EQ(dataset_eos_id(options.out_dir), result.eos_id);

  // The training tokens' unigram entropy, as numpy computes it from the shard files, and what
  // dataset_unigram_entropy gives for this dataset.
  const double entropy = meta.at("train_unigram_entropy").get<double>();
  EXPECT_NEAR(entropy, data_test::python_unigram_entropy(result.train_shards), 1e-10);
  EXPECT_GT(entropy, 1.0);
  EXPECT_LT(entropy, std::log(static_cast<double>(result.tokenizer_vocab_size)));
  EXPECT_EQ(dataset_unigram_entropy(options.out_dir, result.train_shards), entropy);
  // Every training document ends in the training shards: their EOS tokens are the boundaries.
  int64_t boundaries = 0;
  for (const auto& path : result.train_shards) {
    const TokenShard shard(path);
    boundaries += document_span(shard, 0, shard.num_tokens(), result.eos_id).boundaries;
  }
  EXPECT_EQ(boundaries, meta.at("train_documents").get<int64_t>());

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

TEST(Prepare, DocumentOrderIsASeededPermutation) {
  for (const int64_t count : {0, 1, 2, 10, 1000}) {
    std::vector<int64_t> sorted = document_order(count, 7);
    ASSERT_EQ(static_cast<int64_t>(sorted.size()), count);
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> identity(static_cast<size_t>(count));
    std::iota(identity.begin(), identity.end(), 0);
    EXPECT_EQ(sorted, identity) << count << " documents";
    EXPECT_EQ(document_order(count, -1), identity);
    EXPECT_EQ(document_order(count, -1234), identity);
  }
  EXPECT_EQ(document_order(1000, 42), document_order(1000, 42));
  EXPECT_NE(document_order(1000, 42), document_order(1000, 43));
  EXPECT_NE(document_order(1000, 0), document_order(1000, -1));
  // Pinned: computed by an independent Python MT19937-64 with the same draw. A change here would
  // silently reshuffle every dataset prepared with the same seed.
  EXPECT_EQ(document_order(10, 1234), (std::vector<int64_t>{0, 3, 4, 7, 9, 8, 5, 6, 1, 2}));
  EXPECT_EQ(document_order(8, 99), (std::vector<int64_t>{4, 2, 5, 6, 0, 1, 3, 7}));

  // Uniform: over 60,000 seeds each of the 6 orders of 3 documents comes up about 10,000 times
  // (standard deviation ~91); the classic biased swap-with-any shuffle gives 8,889 or 11,111.
  std::map<std::vector<int64_t>, int> seen;
  for (int64_t seed = 0; seed < 60000; ++seed) ++seen[document_order(3, seed)];
  EXPECT_EQ(seen.size(), 6u);
  for (const auto& [order, times] : seen) EXPECT_NEAR(times, 10000, 500) << order[0] << order[1] << order[2];
}

TEST(Prepare, ShuffleIsSeededKeepsEveryDocumentOnceAndReusesTheTokenizer) {
  ScratchDir dir("prepare_shuffle");
  PrepareOptions options = small_options(dir, 8);
  std::vector<std::string> texts;
  for (int i = 0; i < 8; ++i) texts.push_back(data_test::english_like_text(60, i));
  std::vector<std::string> sorted_texts = texts;
  std::sort(sorted_texts.begin(), sorted_texts.end());

  // Prepares with `seed` and checks the exact layout: with stride 4, shuffled positions 0 and 4 are
  // validation, the others training, each in shuffled order. Returns the shards' bytes.
  auto prepare_with = [&](int64_t seed, bool expect_training) {
    options.shuffle_seed = seed;
    const PrepareResult result = prepare_dataset(options);
    EXPECT_EQ(result.trained_tokenizer, expect_training) << "seed " << seed;
    EXPECT_FALSE(result.reused_dataset) << "seed " << seed;
    const std::vector<int64_t> order = document_order(8, seed);
    std::vector<std::string> expected_val, expected_train;
    for (size_t i = 0; i < order.size(); ++i) {
      (i % 4 == 0 ? expected_val : expected_train).push_back(texts[static_cast<size_t>(order[i])]);
    }
    const std::vector<std::string> val = read_documents(result, result.val_shards);
    const std::vector<std::string> train = read_documents(result, result.train_shards);
    EXPECT_EQ(val, expected_val) << "seed " << seed;
    EXPECT_EQ(train, expected_train) << "seed " << seed;
    // Every document exactly once, whatever the seed.
    std::vector<std::string> all = val;
    all.insert(all.end(), train.begin(), train.end());
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all, sorted_texts) << "seed " << seed;

    const auto meta = nlohmann::json::parse(keel::fs::read_file(options.out_dir + "/meta.json"));
    EXPECT_EQ(meta.at("shuffle_seed"), seed);
    EXPECT_EQ(meta.at("dataset_key").at("shuffle_seed"), seed);
    EXPECT_EQ(meta.at("tokenizer_key").count("shuffle_seed"), 0u);
    std::string bytes;
    for (const auto& path : result.val_shards) bytes += keel::fs::read_file(path);
    for (const auto& path : result.train_shards) bytes += keel::fs::read_file(path);
    return bytes;
  };

  const std::string first = prepare_with(1234, true);
  EXPECT_NE(document_order(8, 1234), document_order(8, -1));
  // Another seed: other shards, the same tokenizer.
  const std::string other = prepare_with(99, false);
  EXPECT_NE(other, first);
  // A negative seed keeps file order: documents 0 and 4 are validation, 1 2 3 5 6 7 training.
  const std::string file_order = prepare_with(-1, false);
  EXPECT_NE(file_order, first);
  EXPECT_EQ(document_order(8, -1), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  // The first seed again: byte-identical shards.
  EXPECT_EQ(prepare_with(1234, false), first);
  // Same seed and inputs once more: nothing to do.
  EXPECT_TRUE(prepare_dataset(options).reused_dataset);
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
  data_test::write_text(options.text_files[0], "A single line of text, nothing to split.\n");
  expect_error<DataError>([&] { prepare_dataset(options); }, {"at least 2"});
  options = small_options(dir, 2);
  options.tokenizer = "wordpiece";
  expect_error<DataError>([&] { prepare_dataset(options); }, {"unknown tokenizer 'wordpiece'", "gpt2"});
  options = small_options(dir, 2);
  options.tokenizer = "gpt2";
  options.tokenizer_cache = dir.file("no-tokenizers");
  expect_error<DataError>([&] { prepare_dataset(options); }, {dir.file("no-tokenizers") + "/gpt2/encoder.json", "fetch_tokenizers.sh"});
  options = small_options(dir, 2);
  options.text_files.clear();
  expect_error<DataError>([&] { prepare_dataset(options); }, {"nothing to prepare"});
  options = small_options(dir, 2);
  options.use_embedded_corpus = true;
  options.corpus_cache = dir.file("no-cache");
  expect_error<DataError>([&] { prepare_dataset(options); }, {dir.file("no-cache"), "fetch_corpus.sh"});
}

const std::string kTokenizerCache = std::string(KEEL_SOURCE_DIR) + "/.cache/keel/tokenizers";

TEST(Prepare, Gpt2TokenizerWritesGpt2IdsAndCarriesItsFiles) {
  ScratchDir dir("prepare_gpt2");
  PrepareOptions options = small_options(dir, 6);
  options.tokenizer = "gpt2";
  options.tokenizer_cache = kTokenizerCache;
  options.vocab_size = 300;  // SentencePiece's setting: ignored for GPT-2's fixed vocabulary
  const PrepareResult result = prepare_dataset(options);
  EXPECT_FALSE(result.trained_tokenizer);
  EXPECT_EQ(result.tokenizer_vocab_size, 50257);
  EXPECT_EQ(result.eos_id, 50256);
  EXPECT_TRUE(dataset_ready(options.out_dir));
  EXPECT_FALSE(keel::fs::exists(options.out_dir + "/tokenizer.model"));

  // The dataset names its tokenizer and carries GPT-2's files, byte for byte.
  const auto meta = nlohmann::json::parse(keel::fs::read_file(options.out_dir + "/meta.json"));
  EXPECT_EQ(meta.at("tokenizer").at("kind"), "gpt2");
  EXPECT_EQ(meta.at("vocab_size"), 50257);
  const DatasetTokenizer description = dataset_tokenizer(options.out_dir, dir.file("no-cache-needed"));
  EXPECT_EQ(description.kind, kTokenizerGpt2);
  ASSERT_EQ(description.files.size(), 2u);
  EXPECT_EQ(description.files[0], options.out_dir + "/encoder.json");
  EXPECT_EQ(keel::fs::read_file(description.files[0]), keel::fs::read_file(kTokenizerCache + "/gpt2/encoder.json"));
  EXPECT_EQ(keel::fs::read_file(description.files[1]), keel::fs::read_file(kTokenizerCache + "/gpt2/vocab.bpe"));
  EXPECT_EQ(dataset_eos_id(options.out_dir), 50256);

  // Every document is there once, EOS after each, and decodes back exactly; ids are GPT-2's.
  const auto tokenizer = open_tokenizer(description);
  const std::vector<int> ids = read_tokens(result.train_shards);
  std::vector<int> all = ids;
  const std::vector<int> val = read_tokens(result.val_shards);
  all.insert(all.end(), val.begin(), val.end());
  EXPECT_EQ(std::count(all.begin(), all.end(), 50256), 6);
  EXPECT_LT(*std::max_element(all.begin(), all.end()), 50257);
  std::multiset<std::string> decoded, expected;
  auto begin = all.begin();
  for (auto eos = std::find(begin, all.end(), 50256); eos != all.end(); eos = std::find(begin, all.end(), 50256)) {
    decoded.insert(tokenizer->decode(std::vector<int>(begin, eos)));
    begin = eos + 1;
  }
  for (int i = 0; i < 6; ++i) expected.insert(data_test::english_like_text(60, i));
  EXPECT_EQ(decoded, expected);
  // " farmer" is one GPT-2 token (id 18739 in encoder.json): the words are not spelled out in bytes.
  EXPECT_EQ(tokenizer->encode(" farmer"), std::vector<int>{18739});

  // Re-running with the same inputs reuses everything.
  EXPECT_TRUE(prepare_dataset(options).reused_dataset);
}

// The streamed build (documents and ids through temporary files, encoded in chunks, shards
// written in the shuffled order) against the layout computed here in memory, as prepare did before
// it streamed: every document encoded, concatenated with EOS in document_order, every stride-th to
// validation, each split cut into ceil(n / shard_tokens) near-equal shards. Byte for byte, with a
// chunk of about one document and several shards per split.
TEST(Prepare, StreamingMatchesTheInMemoryLayoutByteForByte) {
  ScratchDir dir("prepare_stream");
  PrepareOptions options = small_options(dir, 9);
  options.val_fraction = 0.3;  // stride 3
  options.shard_tokens = 700;
  options.encode_chunk_bytes = 100;
  for (const char* tokenizer : {"sentencepiece", "gpt2"}) {
    options.tokenizer = tokenizer;
    options.tokenizer_cache = kTokenizerCache;
    options.out_dir = dir.file(std::string("dataset-") + tokenizer);
    const PrepareResult result = prepare_dataset(options);
    const auto text_tokenizer = open_tokenizer(dataset_tokenizer(options.out_dir, kTokenizerCache));
    std::vector<uint16_t> split[2];  // 0 train, 1 val
    const std::vector<int64_t> order = document_order(9, options.shuffle_seed);
    for (size_t i = 0; i < order.size(); ++i) {
      for (const int id : text_tokenizer->encode(data_test::english_like_text(60, static_cast<int>(order[i])))) {
        split[i % 3 == 0].push_back(static_cast<uint16_t>(id));
      }
      split[i % 3 == 0].push_back(static_cast<uint16_t>(result.eos_id));
    }
    for (int is_val = 0; is_val < 2; ++is_val) {
      const auto& tokens = split[is_val];
      const std::vector<std::string>& shards = is_val ? result.val_shards : result.train_shards;
      const size_t count = (tokens.size() + 699) / 700;
      ASSERT_EQ(shards.size(), count) << tokenizer;
      ASSERT_GT(count, 1u) << tokenizer;
      size_t begin = 0;
      for (size_t k = 0; k < count; ++k) {
        const size_t size = tokens.size() / count + (k < tokens.size() % count ? 1 : 0);
        const std::string expected_path = dir.file("expected.bin");
        write_token_shard(expected_path, std::vector<uint16_t>(tokens.begin() + begin, tokens.begin() + begin + size));
        EXPECT_EQ(keel::fs::read_file(shards[k]), keel::fs::read_file(expected_path)) << tokenizer << " " << shards[k];
        begin += size;
      }
    }
    // The recorded entropy is the one of the training shards; no temporary file stays behind.
    const auto meta = nlohmann::json::parse(keel::fs::read_file(options.out_dir + "/meta.json"));
    EXPECT_NEAR(meta.at("train_unigram_entropy").get<double>(), unigram_entropy(result.train_shards), 1e-12);
    for (const auto& name : keel::fs::list_dir(options.out_dir)) {
      EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
      EXPECT_EQ(name.find(".partial"), std::string::npos) << name;
    }
  }
}

TEST(Prepare, OneTextFileIsCutIntoDocuments) {
  ScratchDir dir("prepare_one_file");
  PrepareOptions options = small_options(dir, 0);
  std::string book;
  for (int i = 0; i < 8; ++i) book += data_test::english_like_text(20, i) + "\n";  // a blank line after each
  data_test::write_text(dir.file("book.txt"), book);
  options.text_files = {dir.file("book.txt")};
  EXPECT_EQ(prepare_dataset(options).num_documents, 8);

  // With a separator, only its lines cut.
  std::string separated;
  for (int i = 0; i < 5; ++i) separated += data_test::english_like_text(20, i) + "\n<|endoftext|>\n";
  data_test::write_text(dir.file("book.txt"), separated);
  options.doc_separator = "<|endoftext|>";
  EXPECT_EQ(prepare_dataset(options).num_documents, 5);

  // A file of one paragraph: its lines are the documents.
  data_test::write_text(dir.file("book.txt"), data_test::english_like_text(30, 1));  // 6 lines
  options.doc_separator = "";
  EXPECT_EQ(prepare_dataset(options).num_documents, 6);

  // A folder of files.
  keel::fs::make_dirs(dir.file("folder"));
  for (int i = 0; i < 3; ++i) data_test::write_text(dir.file("folder/part" + std::to_string(i) + ".txt"), book);
  options.text_files = {dir.file("folder")};
  EXPECT_EQ(prepare_dataset(options).num_documents, 24);
}

TEST(LlmcFolder, ShardsWithoutMetaAreADatasetOfGpt2Ids) {
  ScratchDir dir("llmc_folder");
  const std::vector<uint16_t> tokens(600, 50256);
  write_token_shard(dir.file("fineweb_train_000001.bin"), tokens);
  EXPECT_NE(llmc_folder_problem(dir.path()).find("no validation shard"), std::string::npos)
      << llmc_folder_problem(dir.path());
  EXPECT_FALSE(dataset_ready(dir.path()));
  write_token_shard(dir.file("fineweb_val_000000.bin"), tokens);
  EXPECT_EQ(llmc_folder_problem(dir.path()), "");
  EXPECT_TRUE(dataset_ready(dir.path()));
  EXPECT_EQ(dataset_eos_id(dir.path()), 50256);
  // llm.c's names match the default patterns; so do prepare's.
  const DataConfig defaults;
  EXPECT_EQ(glob_shards(dir.path(), defaults.train_pattern), std::vector<std::string>{dir.file("fineweb_train_000001.bin")});
  EXPECT_EQ(glob_shards(dir.path(), defaults.val_pattern), std::vector<std::string>{dir.file("fineweb_val_000000.bin")});

  const DatasetTokenizer description = dataset_tokenizer(dir.path(), kTokenizerCache);
  EXPECT_EQ(description.kind, kTokenizerGpt2);
  EXPECT_EQ(description.files, (std::vector<std::string>{kTokenizerCache + "/gpt2/encoder.json",
                                                          kTokenizerCache + "/gpt2/vocab.bpe"}));
  EXPECT_EQ(description.vocab_size, 50257);
  expect_error<DataError>([&] { dataset_tokenizer(dir.path(), dir.file("nowhere")); },
                          {dir.file("nowhere") + "/gpt2/encoder.json", "fetch_tokenizers.sh"});

  // Not a shard: named.
  data_test::write_text(dir.file("fineweb_val_000000.bin"), "plain text, not a shard");
  EXPECT_NE(llmc_folder_problem(dir.path()).find("is not an llm.c shard"), std::string::npos);
  expect_error<DataError>([&] { dataset_tokenizer(dir.path(), kTokenizerCache); }, {"fineweb_val_000000.bin"});
  // llm.c's version 2 (LLaMA-3, uint32 ids) is refused by name.
  data_test::write_text(dir.file("fineweb_val_000000.bin"), data_test::raw_shard_bytes({kShardMagic, 2, 0}, {}));
  expect_error<DataError>([&] { TokenShard shard(dir.file("fineweb_val_000000.bin")); },
                          {"version 2", "uint32", "LLaMA-3", "not supported"});
  // prepare's own names without meta.json (an interrupted prepare) are not llm.c shards.
  ScratchDir partial("llmc_partial");
  write_token_shard(partial.file("train_000.bin"), tokens);
  write_token_shard(partial.file("val_000.bin"), tokens);
  EXPECT_NE(llmc_folder_problem(partial.path()).find("no llm.c training shard"), std::string::npos);
  EXPECT_FALSE(dataset_ready(partial.path()));
  // An empty folder is neither prepared nor llm.c.
  ScratchDir empty("llmc_empty");
  expect_error<DataError>([&] { dataset_tokenizer(empty.path(), kTokenizerCache); }, {"no llm.c training shard"});
}

}  // namespace
}  // namespace keel
