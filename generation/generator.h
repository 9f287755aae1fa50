// Autoregressive generation with a decoding cache: one prefill call over the prompt, then one
// forward_cached call per new token (model/gpt.h). Softmax models keep a KV cache, linear-attention
// models a fixed-size state per layer (generation/kv_cache.h). Optional TDA (generation/tda.h):
// the prefill's MLP activations choose each layer's neurons, decoding uses the sliced MLPs.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "generation/sampler.h"
#include "generation/tda.h"
#include "model/gpt.h"

namespace keel {

struct GenerationOptions {
  int64_t max_new_tokens = 64;  // capped by model.context_length - prompt length
  SamplerOptions sampler;
  int64_t eos_id = -1;          // stop after generating this token; -1 = never
  TdaOptions tda;
  bool bf16_autocast = false;   // CUDA: bf16 autocast (as training uses it)
};

struct GenerationResult {
  std::vector<int64_t> tokens;      // the generated tokens (without the prompt)
  double prefill_seconds = 0;       // the prompt's forward (and the TDA plan)
  double decode_seconds = 0;        // every step after the prefill
  int64_t decode_steps = 0;         // forward calls after the prefill (tokens.size() - 1 or so)
  int64_t cache_bytes = 0;          // KV cache / linear state at the end
  double tda_sparsity = 0;          // fraction of MLP neurons dropped while decoding
  std::vector<double> tda_layer_sparsity;
  double decode_tokens_per_second() const { return decode_seconds > 0 ? decode_steps / decode_seconds : 0.0; }
};

// prompt: token ids (at least one). The model must be in eval mode; `step_logits`, when given,
// receives each new token's logits (V) on the CPU, fp32.
GenerationResult generate(Gpt& model, const std::vector<int64_t>& prompt, const GenerationOptions& options,
                          std::vector<torch::Tensor>* step_logits = nullptr);

// The reference without a cache: each new token from a full forward over the whole sequence so far.
GenerationResult generate_by_recomputation(Gpt& model, const std::vector<int64_t>& prompt,
                                           const GenerationOptions& options,
                                           std::vector<torch::Tensor>* step_logits = nullptr);

// Mean next-token cross-entropy of tokens[from ..] given the tokens before (the dense model, one
// full forward). from >= 1.
double continuation_loss(Gpt& model, const std::vector<int64_t>& tokens, int64_t from, bool bf16_autocast = false);

// Loss of sequence[prompt_len ..] after a prefill of sequence[.. prompt_len): dense, or (tda set)
// decoding the rest with the MLPs TDA slices for that prompt. Returns {loss, tda sparsity}.
std::pair<double, double> prompted_loss(Gpt& model, const std::vector<int64_t>& sequence, int64_t prompt_len,
                                        const TdaOptions& tda, bool bf16_autocast = false);

}  // namespace keel
