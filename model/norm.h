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

  torch::Tensor weight, bias;  // (width); bias undefined for rms

 private:
  torch::Tensor apply(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) const;

  int64_t width_;
  bool rms_;
};
TORCH_MODULE(Norm);

}  // namespace keel
