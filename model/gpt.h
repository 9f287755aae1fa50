// A GPT-style decoder in LibTorch with the knobs the stability recipes need (see model_config.h).
//
//   idx (B, T) -> token emb + position emb -> [x sqrt(d)] -> [LayerNorm] -> L blocks -> [LayerNorm] -> head
//   block (pre_ln):  x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))
//   block (none):    x = x + attn(x);       x = x + mlp(x)
// Parameter names are stable (they are the keys of model.safetensors): wte.weight, wpe.weight,
// embed_ln.*, blocks.{i}.ln_1.*, blocks.{i}.attn.c_attn.*, blocks.{i}.attn.c_proj.*, blocks.{i}.ln_2.*,
// blocks.{i}.mlp.c_fc.* (gelu/relu) or blocks.{i}.mlp.w_gate/w_up.* (swiglu), blocks.{i}.mlp.c_proj.*,
// ln_f.*, lm_head.weight (untied only).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/model_config.h"

namespace keel {

// Outputs of a forward pass that diagnostics and the stability monitor can ask for.
struct ForwardTrace {
  torch::Tensor embedding_output;                // (B, T, C) what enters the first block
  std::vector<torch::Tensor> block_inputs;       // L x (B, T, C)
  std::vector<torch::Tensor> block_outputs;      // L x (B, T, C)
  std::vector<torch::Tensor> attention_outputs;  // L x (B, T, C) attention sublayer outputs
  std::vector<torch::Tensor> mlp_outputs;        // L x (B, T, C) MLP sublayer outputs
  std::vector<torch::Tensor> mlp_activations;    // L x (B, T, hidden) post-activation MLP hidden
};

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C)
  // Explicit softmax probabilities (B, H, T, T), for diagnostics only.
  torch::Tensor attention_probabilities(const torch::Tensor& x);

  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};

 private:
  int64_t num_heads_, head_dim_;
  double dropout_;
};
TORCH_MODULE(CausalSelfAttention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* activations = nullptr);

  torch::nn::Linear c_fc{nullptr}, w_gate{nullptr}, w_up{nullptr}, c_proj{nullptr};

 private:
  std::string activation_;
};
TORCH_MODULE(Mlp);

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x, ForwardTrace* trace = nullptr);

  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  Mlp mlp{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(Block);

class GptImpl : public torch::nn::Module {
 public:
  explicit GptImpl(const ModelConfig& config);

  // idx: (B, T) int64 token ids -> logits (B, T, V).
  torch::Tensor forward(const torch::Tensor& idx, ForwardTrace* trace = nullptr);
  // Mean cross-entropy of next-token prediction; targets (B, T).
  torch::Tensor loss(const torch::Tensor& idx, const torch::Tensor& targets);
  // The residual stream entering the first block. (B, T) -> (B, T, C)
  torch::Tensor embed(const torch::Tensor& idx);

  // Re-initialises every weight by the recipe's rule (called by the constructor).
  void reset_parameters();

  const ModelConfig& config() const { return config_; }
  int64_t num_parameters() const;
  // Parameters outside the embedding tables (N in the PaLM FLOPs formula).
  int64_t num_non_embedding_parameters() const;
  // Names of the parameters that get weight decay (matrices of linears), the rest get none.
  bool decays(const std::string& parameter_name) const;
  // Parameter groups for per-layer statistics: "embedding", "block.0" ... "block.{L-1}", "head".
  std::vector<std::pair<std::string, std::vector<torch::Tensor>>> layer_groups();

  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::LayerNorm embed_ln{nullptr}, ln_f{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::Linear lm_head{nullptr};

 private:
  ModelConfig config_;
};
TORCH_MODULE(Gpt);

}  // namespace keel
