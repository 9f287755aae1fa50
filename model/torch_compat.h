// The one place where LibTorch versions differ: Debian's 1.13 (CPU) and the GPU nodes' 2.11 (CUDA).
// Everything else in Keel calls these helpers instead of version-specific APIs.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>
#include <ATen/autocast_mode.h>

#define KEEL_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace keel::compat {

// True when LibTorch ships scaled_dot_product_attention (flash / memory-efficient kernels on CUDA).
constexpr bool kHasScaledDotProductAttention = KEEL_TORCH_AT_LEAST(2, 0);
// True when LibTorch ships the fused multi-tensor AdamW kernel.
constexpr bool kHasFusedAdamW = KEEL_TORCH_AT_LEAST(2, 0);

// Causal self-attention. q, k, v: (B, H, T, D) -> (B, H, T, D).
// LibTorch >= 2.0 dispatches to flash/efficient SDPA; 1.13 gets the explicit softmax computation.
inline torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      double dropout_p = 0.0) {
#if KEEL_TORCH_AT_LEAST(2, 0)
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, dropout_p, /*is_causal=*/true);
#else
  const auto T = q.size(-2);
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));  // (B,H,T,T)
  auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(1);
  scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores.to(torch::kFloat), -1).to(q.scalar_type());
  if (dropout_p > 0.0) probs = torch::dropout(probs, dropout_p, /*train=*/true);
  return torch::matmul(probs, v);
#endif
}

// dst[i].copy_(src[i]) for every i: one multi-tensor kernel where LibTorch has _foreach_copy_ (2.1+).
inline void foreach_copy_(std::vector<torch::Tensor>& dst, const std::vector<torch::Tensor>& src) {
#if KEEL_TORCH_AT_LEAST(2, 1)
  at::_foreach_copy_(dst, src);
#else
  for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(src[i]);
#endif
}

// Whether CUDA autocast is on in this thread (the recompute of activation checkpointing, which
// runs on the autograd engine's thread, must see the forward's autocast state).
inline bool cuda_autocast_enabled() {
#if KEEL_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}

// Enables bf16 autocast on CUDA for the guard's lifetime (fp32 master weights stay fp32).
class CudaBf16Autocast {
 public:
  explicit CudaBf16Autocast(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
#if KEEL_TORCH_AT_LEAST(2, 4)
    previous_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    previous_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
#endif
    at::autocast::increment_nesting();
  }
  ~CudaBf16Autocast() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if KEEL_TORCH_AT_LEAST(2, 4)
    at::autocast::set_autocast_enabled(at::kCUDA, previous_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#else
    at::autocast::set_enabled(previous_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
#endif
  }
  CudaBf16Autocast(const CudaBf16Autocast&) = delete;
  CudaBf16Autocast& operator=(const CudaBf16Autocast&) = delete;

 private:
  bool enabled_;
  bool previous_ = false;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

}  // namespace keel::compat
