// `keel score`: the log-probability a checkpoint gives each next token of a token sequence, in fp32
// on the CPU, as the reference that other implementations of the same weights (the Hugging Face
// export, a from-scratch Python forward) are compared with. Torch-free header (LibTorch stays
// inside keel_interop).
//
//   sequence t_0 .. t_{n-1}  ->  logprobs[i] = log softmax(logits(t_0..t_i))[t_{i+1}],  i < n - 1
//
// One forward per sequence (no padding, no batching effects), eval mode, no dropout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace keel::interop {

struct ScoreOptions {
  // Normalise over the first `vocab_limit` logits only (0 = the model's whole vocabulary). An HF
  // export cuts Keel's padded rows (hf_export.h); --vocab with its vocab_size scores like it.
  int64_t vocab_limit = 0;
  std::string logits_path;  // non-empty: also write the logits, "logits.<i>" (n_i, V) fp32 safetensors
  int threads = 0;          // CPU threads; 0 = LibTorch's default
};

struct SequenceScore {
  std::vector<int64_t> tokens;
  std::vector<double> logprobs;  // tokens.size() - 1 values (computed in fp32)
};

// Loads `checkpoint_dir` (TP shards gathered) into one fp32 model of `model`'s shape on the CPU and
// scores each sequence. Throws ConfigError for a sequence longer than model.context_length, shorter
// than 2 tokens, or holding an id outside [0, vocab); KeelError for an unreadable checkpoint.
std::vector<SequenceScore> score_sequences(const std::string& checkpoint_dir, const ModelConfig& model,
                                           const std::vector<std::vector<int64_t>>& sequences,
                                           const ScoreOptions& options);

}  // namespace keel::interop
