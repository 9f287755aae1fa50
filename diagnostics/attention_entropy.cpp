// Attention entropy per head (see attention_entropy.h for the definitions).
#include "diagnostics/attention_entropy.h"

#include <cmath>

#include "common/check.h"

namespace keel::diagnostics {

HeadEntropy attention_entropy(const torch::Tensor& probs) {
  KEEL_CHECK(probs.dim() == 4 && probs.size(2) == probs.size(3),
             "attention_entropy expects (B, H, T, T) probabilities, got " << probs.sizes());
  const int64_t H = probs.size(1), T = probs.size(2);
  // On the probabilities' own device (a GPU keeps the (B, H, T, T) work), in float64.
  auto p = probs.detach().to(torch::kDouble);  // (B, H, T, T)
  const auto options = torch::TensorOptions().device(p.device());
  // Keep only the causal part (j <= i) and define 0 log 0 = 0.
  auto causal = torch::ones({T, T}, options.dtype(torch::kBool)).tril();
  p = p.masked_fill(causal.logical_not(), 0.0);
  auto plogp = torch::where(p > 0, p * torch::log(p.clamp_min(1e-300)), torch::zeros_like(p));
  auto row_entropy = -plogp.sum(-1);  // (B, H, T)
  auto per_head = row_entropy.mean(2).mean(0).to(torch::kCPU);  // (H): equal row counts per batch, so a plain mean

  torch::Tensor per_head_normalised = torch::zeros({H}, torch::kDouble);
  if (T > 1) {
    auto row_length_log = torch::log(torch::arange(1, T + 1, options.dtype(torch::kDouble)));  // (T) log(i+1)
    auto normalised = row_entropy.slice(2, 1, T) / row_length_log.slice(0, 1, T);  // (B, H, T-1)
    per_head_normalised = normalised.mean(2).mean(0).to(torch::kCPU);
  }
  HeadEntropy out;
  out.entropy.resize(H);
  out.normalised_entropy.resize(H);
  for (int64_t h = 0; h < H; ++h) {
    out.entropy[h] = per_head[h].item<double>();
    out.normalised_entropy[h] = per_head_normalised[h].item<double>();
  }
  return out;
}

double entropy_overload_fraction(const std::vector<HeadEntropy>& layers, double threshold) {
  int64_t total = 0, overloaded = 0;
  for (const auto& layer : layers)
    for (double e : layer.normalised_entropy) {
      ++total;
      if (e > threshold) ++overloaded;
    }
  return total == 0 ? 0.0 : static_cast<double>(overloaded) / static_cast<double>(total);
}

}  // namespace keel::diagnostics
