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
// with the sizes it records.
bool dataset_ready(const std::string& out_dir);
// Why out_dir is not a complete prepared dataset ("" when dataset_ready): no or a malformed
// meta.json, a missing tokenizer, or the first shard missing or not of the size meta.json records
// (named, with both sizes: truncated or rewritten since `keel prepare`).
std::string dataset_problem(const std::string& out_dir);

// Reads a complete dataset's meta.json back into a result (reused_dataset = true). Throws
// DataError if it is missing or malformed.
PrepareResult load_prepared_dataset(const std::string& out_dir);


// `dir`/`name` as a path string (the dataset's files all live in one folder).
std::string dataset_file(const std::string& dir, const std::string& name);

// Parses out_dir/meta.json; throws DataError when missing or malformed.
nlohmann::json read_dataset_meta(const std::string& out_dir);

}  // namespace keel
