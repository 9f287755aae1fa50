// SUPRA linear attention ("Linearizing Large Language Models", Mercat et al., arXiv 2405.06640).
//
// A pretrained softmax head softmax(q k^T / sqrt(D)) v becomes
//   y_t = GroupNorm_h( sum_{s<=t} gamma_h^(t-s) <rope(phi(q_t), t), rope(phi(k_s), s) / sqrt(D)> v_s )
//   phi(x) = ReLU(W_h x + b_h)   trainable per-head feature map D -> D (initialised to the identity)
//   rope                         rotary positions, applied after phi (base 10000, rotate-half pairs)
//   gamma_h = exp(-m_h)          fixed decay; m_h = 2^(-8 (h+1) / H) are ALiBi's slopes
//   GroupNorm_h                  one group per head over its D channels (affine), instead of the
//                                softmax denominator
// q, k and v come from the pretrained c_attn and the output goes through the pretrained c_proj
// (model/gpt.cpp); this module holds only the new parameters:
//   phi_weight (H, D, D), phi_bias (H, D), norm_weight (H*D), norm_bias (H*D)
// all split by heads under tensor parallelism (model/tensor_parallel_layout.h).
//
// Two ways to compute the same outputs:
//   forward            parallel form (training): a (T, T) decay-masked score matrix per head;
//   forward_recurrent  recurrent form (generation): a state S (B, H, D, D) per layer,
//                      S_t = gamma S_(t-1) + k_t^T v_t, y_t = q_t S_t; memory does not grow with the
//                      sequence. A call with t > 1 tokens (a prompt) processes them as one chunk:
//                      the parallel form inside the chunk plus the carried state.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace keel {

class LinearAttentionImpl : public torch::nn::Module {
 public:
  // num_heads: this rank's heads; first_head: the global index of its first head; total_heads:
  // heads of the whole layer (the decay slopes depend on the global index).
  LinearAttentionImpl(int64_t num_heads, int64_t head_dim, int64_t first_head, int64_t total_heads);

  // q, k, v: (B, H, T, D) of positions start_pos .. start_pos + T - 1 -> (B, T, H*D).
  torch::Tensor forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        int64_t start_pos = 0);
  // The same outputs, continuing from `state` (B, H, D, D) fp32 (undefined: nothing before
  // start_pos), which is replaced by the state after the last of the T positions.
  torch::Tensor forward_recurrent(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  int64_t start_pos, torch::Tensor& state);

  // The effective attention distribution for diagnostics (attention entropy): the decay-weighted
  // scores |gamma^(t-s) <q_t, k_s>| normalised over s <= t. (B, H, T, T) fp32.
  torch::Tensor attention_weights(const torch::Tensor& q, const torch::Tensor& k);
  // gamma_h of this rank's heads, (H) fp32.
  torch::Tensor decay() const;
  // phi = identity + zero bias, GroupNorm = identity affine.
  void reset_parameters();

  torch::Tensor phi_weight, phi_bias, norm_weight, norm_bias;

 private:
  // rope(phi(x)) for positions start_pos..: (B, H, T, D) -> (B, H, T, D) fp32.
  torch::Tensor features(const torch::Tensor& x, int64_t start_pos) const;
  // (B, H, T, D) -> GroupNorm per head -> (B, T, H*D).
  torch::Tensor normalise(const torch::Tensor& y) const;
  // log(gamma_h) of this rank's heads on `device`, (H) fp32, computed once per device.
  const torch::Tensor& log_gamma(const torch::Device& device) const;

  int64_t num_heads_, head_dim_, first_head_, total_heads_;
  mutable torch::Tensor log_gamma_;
};
TORCH_MODULE(LinearAttention);

// Rotary position embedding of x (..., T, D) for positions start_pos..start_pos + T - 1 (fp32 out).
torch::Tensor apply_rotary(const torch::Tensor& x, int64_t start_pos);

}  // namespace keel
