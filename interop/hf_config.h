// Keel's model section <-> Hugging Face's GPT-2 config.json (transformers' GPT2Config), and the
// rule of which Keel models GPT-2 can express at all. Torch-free.
//
// Why a whitelist: `keel export --format hf` must never write a model that transformers loads
// without complaint but computes differently. Every ModelConfig field is judged here (see
// check_hf_expressible): settings that change the forward pass in a way GPT2LMHeadModel has no
// switch for are refused with a ConfigError naming the setting (exit code 2); settings that only
// shape training (init, scaled_out_proj) or that GPT-2 has a field for (activation relu,
// mlp_hidden -> n_inner, tie_embeddings -> tie_word_embeddings, dropout -> *_pdrop) are mapped.
// The import direction (model_config_from_hf) is just as strict about GPT2Config fields whose
// non-default values Keel cannot compute (erf GELU, another LayerNorm epsilon, scaled or
// unscaled attention variants, cross-attention).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "model/model_config.h"

namespace keel::interop {

// Keel's MLP GELU is the tanh approximation (model/gpt.cpp: torch::gelu(x, "tanh")); GPT-2's own
// config names that function "gelu_new" (transformers' NewGELUActivation, the same formula).
inline constexpr const char* kHfGeluTanh = "gelu_new";
// LibTorch's LayerNorm default epsilon, which every Keel LayerNorm uses (= GPT-2's 1e-5).
inline constexpr double kKeelLayerNormEpsilon = 1e-5;

// Throws ConfigError naming the first model.* setting (and its value) that GPT2LMHeadModel cannot
// compute: norm=none, activation=swiglu, embed_scale=sqrt_d, embed_norm=layernorm,
// attention=linear. Everything else in ModelConfig is expressible or training-only.
void check_hf_expressible(const ModelConfig& model);

// What config.json says besides the model's shape.
struct HfConfigExtras {
  int64_t vocab_size = 0;  // the exported vocabulary (the tokenizer's; Keel's padded rows are cut)
  int64_t eos_id = -1;     // the dataset's document separator; also bos (as GPT-2's <|endoftext|>)
  nlohmann::json provenance = nlohmann::json::object();  // stored under "keel_export"
};

// config.json of GPT2LMHeadModel for `model` (which must pass check_hf_expressible).
nlohmann::json hf_config_json(const ModelConfig& model, const HfConfigExtras& extras);
// generation_config.json: bos/eos ids (nothing else: sampling settings are the user's).
nlohmann::json hf_generation_config_json(const HfConfigExtras& extras);

// The Keel model section that computes what the GPT2 `config` (config.json, parsed) computes.
// Throws ConfigError naming `origin` and the GPT2Config field for anything Keel cannot express.
ModelConfig model_config_from_hf(const nlohmann::json& config, const std::string& origin);

}  // namespace keel::interop
