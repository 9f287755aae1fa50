// `keel export --format hf`: a Keel checkpoint as a Hugging Face folder that transformers loads with
// AutoModelForCausalLM.from_pretrained(DIR) / AutoTokenizer.from_pretrained(DIR). Torch-free header
// (LibTorch stays inside keel_interop).
//
//   DIR/config.json             GPT2Config (hf_config.h), vocab_size = the tokenizer's vocabulary
//   DIR/generation_config.json  bos/eos = the dataset's document separator
//   DIR/model.safetensors       HF GPT-2 names and layouts (hf_names.h), fp32, metadata {"format": "pt"}
//   tokenizer, GPT-2 datasets:  vocab.json (= encoder.json), merges.txt (= vocab.bpe),
//                               tokenizer_config.json (GPT2Tokenizer), special_tokens_map.json
//   SentencePiece datasets:     tokenizer.model, tokenizer_config.json (LlamaTokenizer, see
//                               hf_tokenizer.cpp for why), special_tokens_map.json
//
// A tensor-parallel checkpoint exports whole: the weights are loaded into one full model
// (checkpoint_torch re-assembles the TP shards). Everything is written into a sibling staging
// folder that is renamed to DIR at the end, so a refused or failed export leaves nothing at DIR.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset_meta.h"
#include "model/model_config.h"

namespace keel::interop {

struct HfExportOptions {
  std::string checkpoint_dir;  // a Keel checkpoint folder (its TP shards, if any, are gathered)
  ModelConfig model;           // its config.yaml's model section
  // The dataset's tokenizer (data/dataset_meta.h). nullopt: no tokenizer files, and the
  // vocabulary is exported at the model's full (possibly padded) size.
  std::optional<DatasetTokenizer> tokenizer;
  std::string out_dir;
  bool overwrite = false;  // replace an existing out_dir (otherwise that is an error)
  nlohmann::json provenance = nlohmann::json::object();  // recorded in config.json "keel_export"
};

struct HfExportResult {
  int64_t vocab_size = 0;         // rows of the exported embedding
  int64_t dropped_vocab_rows = 0;  // Keel's padding rows that were cut
  int64_t parameters = 0;          // elements of the exported tensors
  std::vector<std::string> files;  // names written into out_dir
};

// Throws ConfigError (exit 2) for a model GPT-2 cannot express or a tokenizer larger than the
// model's vocabulary, before anything is written; KeelError for unreadable checkpoints.
HfExportResult export_hf(const HfExportOptions& options);

// Writes the tokenizer files for `tokenizer` into `dir` (hf_tokenizer.cpp); returns their names.
std::vector<std::string> write_hf_tokenizer(const DatasetTokenizer& tokenizer, int64_t model_max_length,
                                            const std::string& dir);

}  // namespace keel::interop
