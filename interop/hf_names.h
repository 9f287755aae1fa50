// The one table of how Keel's GPT parameters (model/gpt.h) are named and laid out in a Hugging
// Face GPT2LMHeadModel state dict, used by both `keel export --format hf` and `keel import`.
// Torch-free.
//
//   Keel (nn.Linear: weight (out, in))         HF GPT-2 (Conv1D: weight (in, out), y = x W + b)
//   wte.weight (V_keel, C)                      transformer.wte.weight (V, C)   first V rows
//   wpe.weight (T, C)                           transformer.wpe.weight (T, C)
//   blocks.i.ln_1.{weight,bias} (C)             transformer.h.i.ln_1.{weight,bias}
//   blocks.i.attn.c_attn.weight (3C, C)         transformer.h.i.attn.c_attn.weight (C, 3C)  transposed
//   blocks.i.attn.c_attn.bias (3C)              transformer.h.i.attn.c_attn.bias (3C)
//   blocks.i.attn.c_proj.weight (C, C)          transformer.h.i.attn.c_proj.weight (C, C)   transposed
//   blocks.i.ln_2.*, blocks.i.mlp.c_fc.weight (H, C) -> mlp.c_fc.weight (C, H) transposed,
//   blocks.i.mlp.c_proj.weight (C, H) -> mlp.c_proj.weight (H, C) transposed, biases as they are
//   ln_f.{weight,bias}                          transformer.ln_f.{weight,bias}
//   lm_head.weight (V_keel, C), untied only     lm_head.weight (V, C)  (nn.Linear in HF too)
// q, k and v need no reordering: Keel's c_attn output is [q | k | v] (each C wide, heads
// contiguous, gpt.cpp heads_qkv) and GPT-2 splits its c_attn output the same way (split_size = C,
// then (B, T, H, D) per part). A tied head has no lm_head.weight in the file, as transformers'
// save_pretrained writes it: GPT2LMHeadModel ties it to wte on load (no missing-key warning).
// Keel models built with bias=false have no linear biases; the export writes zeros for them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace keel::interop {

struct HfTensor {
  std::string keel;                // Keel parameter name, e.g. "blocks.0.attn.c_attn.weight"
  std::string hf;                  // HF name, e.g. "transformer.h.0.attn.c_attn.weight"
  std::vector<int64_t> hf_shape;   // the shape in the HF file
  bool transposed = false;         // Keel (out, in) <-> Conv1D (in, out)
  bool vocab_rows = false;         // dim 0 indexes token ids: Keel may hold more (padded) rows
  bool zero_if_absent = false;     // a linear bias that a bias=false Keel model does not have
};

// Every tensor of the HF GPT-2 state dict for `model` with an `hf_vocab`-row vocabulary, in
// transformers' state-dict order (lm_head.weight only when the head is untied).
std::vector<HfTensor> hf_tensors(const ModelConfig& model, int64_t hf_vocab);

// The "transformer."-prefixed name for a name found in an HF file: files saved from GPT2Model (and
// the original gpt2 repositories) lack the prefix ("h.0.ln_1.weight").
std::string hf_canonical_name(const std::string& name);

// Tensors of HF GPT-2 files that are not weights: the causal-mask buffers older transformers
// saved (h.i.attn.bias, h.i.attn.masked_bias). Import skips them.
bool hf_mask_buffer(const std::string& canonical_name);

}  // namespace keel::interop
