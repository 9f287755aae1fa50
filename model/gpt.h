// A GPT-style decoder in LibTorch with the knobs the stability recipes need (see model_config.h).
//
//   idx (B, T) -> token emb [+ position emb] -> [x sqrt(d)] -> [LayerNorm] -> L blocks -> [norm] -> head
//   block (pre_ln, rms):  x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))   (ln_*: LayerNorm or RMSNorm)
//   block (none):         x = x + attn(x);       x = x + mlp(x)
//   attention: q, k, v per head; [q_norm(q), k_norm(k)] (model.qk_norm); [rotary on q and k]
//   (model.position=rope, then there is no wpe table); causal softmax.
// Parameter names are stable (they are the keys of model.safetensors): wte.weight, wpe.weight,
// embed_ln.*, blocks.{i}.ln_1.*, blocks.{i}.attn.c_attn.*, blocks.{i}.attn.{q,k}_norm.* (qk_norm),
// blocks.{i}.attn.c_proj.*, blocks.{i}.ln_2.*,
// blocks.{i}.mlp.c_fc.* (gelu/relu) or blocks.{i}.mlp.w_gate/w_up.* (swiglu), blocks.{i}.mlp.c_proj.*,
// ln_f.*, lm_head.weight (untied only).
//
// Tensor parallelism (Megatron-style; tensor_parallel_layout.h says which tensor is split how): built
// with a TP communicator of size tp, each rank holds num_heads/tp heads, mlp_hidden/tp MLP units and
// vocab_size/tp rows of the embedding (and untied head); forward() then returns this rank's vocabulary
// slice of the logits and loss() the vocab-parallel cross-entropy. Weights are drawn at full size
// from the same RNG stream as a single-process model and sliced, so a TP model starts from exactly
// the single-process weights. Every TP rank must run the same forward/backward calls.
//
// model.attention=linear: each attention keeps c_attn/c_proj and adds SUPRA's parameters under
// blocks.{i}.attn.supra.* (model/linear_attention.h). forward_cached() is the incremental forward of
// generation: per-layer AttentionCache (a KV cache or a linear-attention state), an optional
// replacement MLP per layer (TDA's sliced MLP); single-process models only.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "model/attention_cache.h"
#include "model/linear_attention.h"
#include "model/lm_loss.h"
#include "model/model_config.h"
#include "model/norm.h"
#include "model/tensor_parallel_layout.h"
#include "parallel/communicator.h"

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

// What the incremental forward (generation) needs besides the tokens.
struct DecodeHooks {
  std::vector<AttentionCache*> caches;  // one per block (borrowed)
  // Per block, optional (empty: the dense MLP): replaces the MLP, e.g. TDA's sliced MLP.
  // (B, t, C) -> (B, t, C). May be shorter than the number of blocks.
  std::vector<std::function<torch::Tensor(const torch::Tensor&)>> mlp;
  ForwardTrace* trace = nullptr;  // receives mlp_activations of the dense MLPs (TDA's prefill scores)
};

// This rank's place in the tensor-parallel group (size 1 and no communicator: not split).
struct TensorParallelPlacement {
  parallel::Communicator* comm = nullptr;  // borrowed; outlives the model
  int64_t rank = 0;
  int64_t size = 1;
  static TensorParallelPlacement of(parallel::Communicator* comm);
  bool split() const { return size > 1; }
};

// This rank's slice of a full tensor, and the full tensor from all ranks' slices (in rank order).
torch::Tensor tensor_parallel_shard(const torch::Tensor& full, ShardKind kind, int64_t rank, int64_t size);
torch::Tensor tensor_parallel_unshard(const std::vector<torch::Tensor>& shards, ShardKind kind);

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const ModelConfig& config, TensorParallelPlacement tp = {});
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C)
  // Positions start_pos .. start_pos + t - 1 of a sequence whose earlier positions are in `cache`.
  // (B, t, C) -> (B, t, C)
  torch::Tensor forward_cached(const torch::Tensor& x, int64_t start_pos, AttentionCache& cache);
  // Explicit softmax probabilities (B, H_local, T, T) of this rank's heads, for diagnostics only
  // (linear attention: its normalised decay-weighted score magnitudes, linear_attention.h).
  // max_logit (optional): the largest pre-softmax score q.k/sqrt(D) of this rank's heads over the
  // causal positions, () fp32 (the quantity QK-norm bounds); undefined for linear attention.
  torch::Tensor attention_probabilities(const torch::Tensor& x, torch::Tensor* max_logit = nullptr);
  bool linear() const { return !supra.is_empty(); }

  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};
  Norm q_norm{nullptr}, k_norm{nullptr};  // model.qk_norm: over each head's D dims, shared by all heads
  LinearAttention supra{nullptr};  // model.attention=linear only

 private:
  // q, k, v of this rank's heads for positions start_pos..: 3 x (B, H/tp, T, D), with q and k
  // normalised (qk_norm) and rotated (rope) as the attention uses them.
  std::vector<torch::Tensor> heads_qkv(const torch::Tensor& x, int64_t start_pos);

  int64_t num_heads_, head_dim_;  // num_heads_: this rank's heads
  bool rope_;
  double dropout_;
  TensorParallelPlacement tp_;
};
TORCH_MODULE(CausalSelfAttention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& config, TensorParallelPlacement tp = {});
  // activations: this rank's (B, T, hidden/tp) slice of the post-activation hidden units.
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* activations = nullptr);

  torch::nn::Linear c_fc{nullptr}, w_gate{nullptr}, w_up{nullptr}, c_proj{nullptr};

 private:
  std::string activation_;
  TensorParallelPlacement tp_;
};
TORCH_MODULE(Mlp);

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const ModelConfig& config, TensorParallelPlacement tp = {});
  torch::Tensor forward(const torch::Tensor& x, ForwardTrace* trace = nullptr);
  // The same block with its last residual add left to the caller, so the add can be fused with the
  // next norm (residual_norm): takes the residual x and the previous block's pending sub-layer output
  // (undefined for the first block) and returns {residual after the attention, MLP output}. Needs
  // norms (model.norm != none). fused: train.fused_residual_norm.
  std::pair<torch::Tensor, torch::Tensor> forward_deferred(const torch::Tensor& x, const torch::Tensor& pending,
                                                           bool fused);
  // Incremental forward (eval only): `mlp`, when set, replaces the dense MLP.
  torch::Tensor forward_cached(const torch::Tensor& x, int64_t start_pos, AttentionCache& cache,
                               const std::function<torch::Tensor(const torch::Tensor&)>& mlp,
                               ForwardTrace* trace);

  Norm ln_1{nullptr}, ln_2{nullptr};  // model.norm pre_ln (LayerNorm) or rms; none: absent
  CausalSelfAttention attn{nullptr};
  Mlp mlp{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(Block);

class GptImpl : public torch::nn::Module {
 public:
  // tp: the tensor-parallel communicator (nullptr: a whole model on this process).
  explicit GptImpl(const ModelConfig& config, parallel::Communicator* tp = nullptr);

  // idx: (B, T) int64 token ids -> logits (B, T, V), or (B, T, V/tp) this rank's vocabulary slice.
  torch::Tensor forward(const torch::Tensor& idx, ForwardTrace* trace = nullptr);
  // Mean cross-entropy of next-token prediction; targets (B, T). Unsplit models compute it with
  // lm_cross_entropy (model/lm_loss.h): fused kernels for bf16 CUDA logits unless switched off.
  torch::Tensor loss(const torch::Tensor& idx, const torch::Tensor& targets);
  // The training loss's parts: the cross-entropy (what loss() returns) and, with want_z, the
  // z-loss term mean(logsumexp(logits)^2) before its coefficient (train.z_loss). TP models compute
  // both vocab-parallel.
  LmLossTerms loss_terms(const torch::Tensor& idx, const torch::Tensor& targets, bool want_z);
  // train.fused_cross_entropy: allow the fused cross-entropy kernels (default on; off = LibTorch's).
  void set_fused_cross_entropy(bool on) { fused_cross_entropy_ = on; }
  bool fused_cross_entropy() const { return fused_cross_entropy_; }
  // train.fused_residual_norm: allow the fused residual add + norm kernels (default on; they apply on
  // CUDA under bf16 autocast, see residual_norm in model/norm.h).
  void set_fused_residual_norm(bool on) { fused_residual_norm_ = on; }
  bool fused_residual_norm() const { return fused_residual_norm_; }
  // Incremental forward of positions start_pos .. start_pos + t - 1 (generation; eval mode, one
  // process): idx (B, t) -> logits (B, t, V); hooks.caches hold what earlier calls saw.
  torch::Tensor forward_cached(const torch::Tensor& idx, int64_t start_pos, const DecodeHooks& hooks);
  // The residual stream entering the first block, for positions start_pos ... (B, T) -> (B, T, C)
  torch::Tensor embed(const torch::Tensor& idx, int64_t start_pos = 0);

  // Re-initialises every weight by the recipe's rule (called by the constructor).
  void reset_parameters();

  const ModelConfig& config() const { return config_; }
  const TensorParallelPlacement& tensor_parallel() const { return tp_; }
  // First vocabulary id of this rank's slice of the embedding and logits.
  int64_t vocab_start() const { return tp_.rank * (config_.vocab_size / tp_.size); }
  // Parameters of the whole model (all TP shards together).
  int64_t num_parameters() const;
  // Parameters outside the embedding tables (N in the PaLM FLOPs formula).
  int64_t num_non_embedding_parameters() const;
  // Names of the parameters that get weight decay (matrices of linears), the rest get none.
  bool decays(const std::string& parameter_name) const;
  // Parameter groups for per-layer statistics: "embedding", "block.0" ... "block.{L-1}", "head".
  std::vector<std::pair<std::string, std::vector<torch::Tensor>>> layer_groups();

  torch::nn::Embedding wte{nullptr}, wpe{nullptr};  // wpe: model.position=learned only
  Norm embed_ln{nullptr}, ln_f{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::Linear lm_head{nullptr};

 private:
  ModelConfig config_;
  TensorParallelPlacement tp_;
  bool fused_cross_entropy_ = true;
  bool fused_residual_norm_ = true;
};
TORCH_MODULE(Gpt);

}  // namespace keel
