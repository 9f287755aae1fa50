// The normalisations the recipes choose between: LayerNorm (GPT-2) and RMSNorm (LLaMA, OLMo 2),
// one module type so a block holds "a norm" whichever it is. Parameters are registered on the
// module itself (`weight`, and `bias` for LayerNorm), so a LayerNorm keeps the names GPT-2 and
// older Keel checkpoints use (blocks.i.ln_1.weight / .bias).
//
//   layernorm: y = (x - mean) / sqrt(var + 1e-5) * weight + bias     (LibTorch's layer_norm)
//   rms:       y = x / sqrt(mean(x^2) + 1e-6) * weight                (in fp32, cast back)
// over the last dimension of x (..., width).
#pragma once

#include <torch/torch.h>

#include <string>

#include "kernels/residual_norm_torch.h"
#include "parallel/communicator.h"

namespace keel {

class NormImpl : public torch::nn::Module {
 public:
  // kind: "layernorm" or "rms".
  NormImpl(int64_t width, const std::string& kind);
  torch::Tensor forward(const torch::Tensor& x);  // (..., width) -> (..., width)
  // The same, for a norm whose weights every tensor-parallel rank holds but applies to different
  // inputs (QK-norm over each rank's own heads): the weights enter through copy_to_tensor_parallel,
  // so their gradients are summed over the TP group and stay identical on every rank.
  torch::Tensor forward_tensor_parallel(const torch::Tensor& x, parallel::Communicator& tp);
  bool rms() const { return rms_; }
  double eps() const { return rms_ ? 1e-6 : 1e-5; }

  torch::Tensor weight, bias;  // (width); bias undefined for rms

 private:
  torch::Tensor apply(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) const;

  int64_t width_;
  bool rms_;
};
TORCH_MODULE(Norm);

// A pre-norm block's residual step: the new residual h = x + delta (x itself when delta is
// undefined) and norm(h), the input of the next sub-layer, as kernels::ResidualNormOutput
// {residual, normalised}; normalised is bf16 on the fused path, else the dtype LibTorch gives.
// fused: allow the fused kernels of kernels/residual_norm_torch.h (train.fused_residual_norm). They
// apply on CUDA under bf16 autocast with an fp32 x and a bf16 delta (or none), which is how a block's
// residual stream and sub-layer outputs come there, and return norm(h) in bf16, the dtype the next
// matmul takes; everywhere else (the CPU, fp32 runs, fused = false) LibTorch's add and norm, in the
// same order as the unfused block, so the result is bit-identical to it.
kernels::ResidualNormOutput residual_norm(const torch::Tensor& x, const torch::Tensor& delta, NormImpl& norm, bool fused);
// True when residual_norm(x, delta, norm, true) takes the fused kernels.
bool residual_norm_fused(const torch::Tensor& x, const torch::Tensor& delta, const NormImpl& norm);

}  // namespace keel
