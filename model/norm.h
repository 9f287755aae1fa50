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

namespace keel {

class NormImpl : public torch::nn::Module {
 public:
  // kind: "layernorm" or "rms".
  NormImpl(int64_t width, const std::string& kind);
  torch::Tensor forward(const torch::Tensor& x);  // (..., width) -> (..., width)
  bool rms() const { return rms_; }

  torch::Tensor weight, bias;  // (width); bias undefined for rms

 private:
  int64_t width_;
  bool rms_;
};
TORCH_MODULE(Norm);

}  // namespace keel
