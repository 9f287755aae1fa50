// ModelConfig: the "model" config section, the GPT shape and the stability-recipe knobs.
// Torch-free so the CLI and the coordinator can read and print it.
//
// Recipes (configs/*.yaml) are combinations of these knobs:
//   vanilla        norm=pre_ln, init=normal_0.02, embed_scale=1
//   scaled-embed   embed_scale=sqrt_d, init=small            (Spike No More, arXiv 2312.16903)
//   embed-ln       embed_norm=layernorm, init=small           (Spike No More)
//   normfree-gelu  norm=none, activation=gelu                 (ReLU's Revival, arXiv 2410.09637)
//   normfree-relu  norm=none, activation=relu
//   qk-norm        qk_norm=layernorm: LayerNorm on each head's queries and keys (Dehghani et al.
//                  2023, Wortsman et al. 2023: bounds the attention logits)
//   qk-norm-zloss  qk_norm=rms, norm=rms + train.z_loss (OLMo 2's fix for loss spikes)
//   rms-rope       norm=rms, position=rope, activation=swiglu, bias=false (the LLaMA-style baseline)
// attention=linear swaps every softmax attention for SUPRA's linear attention (arXiv 2405.06640,
// model/linear_attention.h); `keel uptrain` converts a softmax checkpoint to it.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "common/config.h"

namespace keel {

struct ModelConfig {
  int64_t vocab_size = 8192;      // rows of the token embedding; >= the tokenizer's vocabulary
  int64_t context_length = 128;   // maximum sequence length T
  int64_t num_layers = 4;         // transformer blocks L
  int64_t num_heads = 4;          // attention heads per block
  int64_t d_model = 256;          // residual width d
  int64_t mlp_hidden = 0;         // MLP hidden width; 0 = 4d (gelu/relu) or 64-rounded 8d/3 (swiglu)
  std::string norm = "pre_ln";    // pre_ln (LayerNorm) | rms (RMSNorm) | none, before each sublayer and the head
  std::string qk_norm = "none";   // none | layernorm | rms: on each head's q and k, before the dot product
  std::string position = "learned";  // learned (wpe table) | rope (rotary on q and k, no table)
  std::string activation = "gelu";  // gelu | relu | swiglu
  std::string embed_scale = "1";  // 1 | sqrt_d: multiply the embedding output by sqrt(d)
  std::string embed_norm = "none";  // none | layernorm: LayerNorm on the embedding output
  std::string init = "normal_0.02";  // normal_0.02 | small: N(0, sqrt(2/(5d)))
  bool scaled_out_proj = true;    // output projections of each sublayer init std / sqrt(2L)
  bool tie_embeddings = true;     // the output head shares the token embedding
  bool bias = true;               // biases in linears and LayerNorms
  double dropout = 0.0;           // dropout after attention/MLP and on embeddings
  std::string attention = "softmax";  // softmax (causal, flash SDPA where LibTorch has it) | linear (SUPRA)

  void visit(ConfigVisitor& v) {
    v.field("vocab_size", vocab_size, "rows of the token embedding (>= tokenizer vocabulary)");
    v.field("context_length", context_length, "maximum sequence length T");
    v.field("num_layers", num_layers, "transformer blocks L");
    v.field("num_heads", num_heads, "attention heads per block");
    v.field("d_model", d_model, "residual stream width d");
    v.field("mlp_hidden", mlp_hidden, "MLP hidden width; 0 = 4d (gelu/relu) or 8d/3 rounded to 64 (swiglu)");
    v.choice("norm", norm, {"pre_ln", "rms", "none"},
             "pre_ln (LayerNorm), rms (RMSNorm, no bias) or none (norm-free), before each sublayer and the head");
    v.choice("qk_norm", qk_norm, {"none", "layernorm", "rms"},
             "normalise each head's queries and keys before the dot product (weights shared over heads)");
    v.choice("position", position, {"learned", "rope"}, "learned position table (wpe) or rotary positions on q and k");
    v.choice("activation", activation, {"gelu", "relu", "swiglu"}, "MLP activation");
    v.choice("embed_scale", embed_scale, {"1", "sqrt_d"}, "scale of the embedding output");
    v.choice("embed_norm", embed_norm, {"none", "layernorm"}, "LayerNorm on the embedding output");
    v.choice("init", init, {"normal_0.02", "small"}, "weight init: N(0,0.02) or N(0,sqrt(2/(5d)))");
    v.field("scaled_out_proj", scaled_out_proj, "sublayer output projections init std/sqrt(2L)");
    v.field("tie_embeddings", tie_embeddings, "output head shares the token embedding");
    v.field("bias", bias, "biases in linears and LayerNorms");
    v.field("dropout", dropout, "dropout probability");
    v.choice("attention", attention, {"softmax", "linear"},
             "softmax (causal softmax attention) or linear (SUPRA: ReLU feature map, rotary, per-head decay, "
             "GroupNorm; generation keeps a fixed-size state)");
  }

  void validate() const {
    auto require = [](bool ok, const std::string& message) {
      if (!ok) throw ConfigError(message);
    };
    require(vocab_size >= 2, "model.vocab_size must be >= 2");
    require(context_length >= 1, "model.context_length must be >= 1");
    require(num_layers >= 1, "model.num_layers must be >= 1");
    require(num_heads >= 1, "model.num_heads must be >= 1");
    require(d_model >= 1 && d_model % num_heads == 0,
            "model.d_model (" + std::to_string(d_model) + ") must be a positive multiple of model.num_heads (" +
                std::to_string(num_heads) + ")");
    require(mlp_hidden >= 0, "model.mlp_hidden must be >= 0");
    require(dropout >= 0.0 && dropout < 1.0, "model.dropout must be in [0, 1)");
    require(position != "rope" || head_dim() % 2 == 0,
            "model.position=rope rotates pairs of each head's dimensions, which needs an even head dimension "
            "(d_model / num_heads = " + std::to_string(head_dim()) + ")");
    require(attention != "linear" || (position == "learned" && qk_norm == "none"),
            "model.attention=linear (SUPRA) applies its own feature map and rotary positions: it needs "
            "model.position=learned and model.qk_norm=none");
    require(attention != "linear" || head_dim() % 2 == 0,
            "model.attention=linear applies rotary positions, which need an even head dimension (d_model / "
            "num_heads = " + std::to_string(head_dim()) + ")");
  }

  int64_t head_dim() const { return d_model / num_heads; }

  int64_t mlp_hidden_width() const {
    if (mlp_hidden > 0) return mlp_hidden;
    if (activation == "swiglu") return ((8 * d_model / 3) + 63) / 64 * 64;
    return 4 * d_model;
  }

  // Standard deviation of the weight init (before the 1/sqrt(2L) output-projection scaling).
  double init_std() const {
    return init == "small" ? std::sqrt(2.0 / (5.0 * static_cast<double>(d_model))) : 0.02;
  }
};

}  // namespace keel
