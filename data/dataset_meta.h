// A prepared dataset's meta.json: what `keel prepare` wrote (tokenizer, shards, token counts) and
// the one readiness check `keel train` needs. Separate from prepare.cpp so that training code never
// links SentencePiece: Debian's libsentencepiece bundles its own protobuf-lite and exports its
// symbols, which clash with libprotobuf (loaded by LibTorch and gRPC) in one process.
// Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace keel {

constexpr int kDatasetMetaFormatVersion = 1;
constexpr const char* kDatasetMetaFile = "meta.json";

struct PrepareResult {
  std::string out_dir;
  std::string tokenizer_model;            // out_dir/tokenizer.model
  std::vector<std::string> train_shards;  // paths, in order
  std::vector<std::string> val_shards;
  int64_t num_documents = 0;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  int64_t tokenizer_vocab_size = 0;  // actual size (a tiny corpus may give fewer than requested)
  int eos_id = -1;
  bool trained_tokenizer = false;  // false when an up-to-date tokenizer.model was reused
  bool reused_dataset = false;     // true when the existing dataset already matched; nothing written
};

// True when out_dir/meta.json exists and parses, and the tokenizer and every shard it lists exist
// with the sizes it records; or when out_dir is a folder of llm.c shards (llmc_folder_problem).
bool dataset_ready(const std::string& out_dir);
// Why out_dir is not a complete prepared dataset ("" when dataset_ready): no or a malformed
// meta.json, a missing tokenizer, or the first shard missing or not of the size meta.json records
// (named, with both sizes: truncated or rewritten since `keel prepare`).
std::string dataset_problem(const std::string& out_dir);

// Reads a complete dataset's meta.json back into a result (reused_dataset = true). Throws
// DataError if it is missing or malformed.
PrepareResult load_prepared_dataset(const std::string& out_dir);


// llm.c's shard names (fineweb_train_000001.bin, tiny_shakespeare_val.bin, ...): a prefix, then
// _train / _val. prepare's own names (train_000.bin) do not match, so a prepared folder whose
// meta.json is gone (an interrupted prepare removes it first) is never taken for llm.c shards.
inline constexpr const char* kLlmcTrainPattern = "*_train*.bin";
inline constexpr const char* kLlmcValPattern = "*_val*.bin";
// GPT-2's vocabulary: the ids llm.c's version-1 shards hold, and <|endoftext|>.
inline constexpr int64_t kGpt2VocabSize = 50257;
inline constexpr int kGpt2EndOfText = 50256;

// Why `dir` is not a folder of llm.c shards usable as they are ("" when it is): it must have no
// meta.json and no tokenizer.model (prepare's), and hold a training and a validation shard (kLlmcTrainPattern, kLlmcValPattern) that
// start with llm.c's magic. Their ids are GPT-2's, as every llm.c version-1 shard.
std::string llmc_folder_problem(const std::string& dir);

// Which tokenizer a dataset's token ids belong to, and where its files are.
inline constexpr const char* kTokenizerSentencePiece = "sentencepiece";
inline constexpr const char* kTokenizerGpt2 = "gpt2";

struct DatasetTokenizer {
  std::string kind;                // kTokenizerSentencePiece or kTokenizerGpt2
  std::vector<std::string> files;  // sentencepiece: {DIR/tokenizer.model}; gpt2: {encoder.json, vocab.bpe}
  int64_t vocab_size = 0;          // ids are in [0, vocab_size)
  int eos_id = -1;                 // the document separator prepare writes before each document
};

// The tokenizer of the dataset in `data_dir`: what its meta.json records (a meta.json without a
// "kind" is SentencePiece, as every dataset before GPT-2 support), or, for a folder of llm.c shards
// with no meta.json, GPT-2's with its files from `tokenizer_cache`/gpt2 (scripts/fetch_tokenizers.sh).
// Throws DataError naming the folder when neither applies or a file is missing.
DatasetTokenizer dataset_tokenizer(const std::string& data_dir, const std::string& tokenizer_cache);

// `dir`/`name` as a path string (the dataset's files all live in one folder).
std::string dataset_file(const std::string& dir, const std::string& name);

// Parses out_dir/meta.json; throws DataError when missing or malformed.
nlohmann::json read_dataset_meta(const std::string& out_dir);

}  // namespace keel
