// Attention entropy per head (see attention_entropy.h for the definitions).
#include "diagnostics/attention_entropy.h"

#include <cmath>

#include "common/check.h"

namespace keel::diagnostics {

torch::Tensor attention_entropy_tensor(const torch::Tensor& probs) {
  KEEL_CHECK(probs.dim() == 4 && probs.size(2) == probs.size(3),
             "attention_entropy expects (B, H, T, T) probabilities, got " << probs.sizes());
  const int64_t T = probs.size(2);
  // On the probabilities' own device (a GPU keeps the (B, H, T, T) work), in float64.
  auto p = probs.detach().to(torch::kDouble);  // (B, H, T, T)
  const auto options = torch::TensorOptions().device(p.device());
  // Keep only the causal part (j <= i) and define 0 log 0 = 0.
  auto causal = torch::ones({T, T}, options.dtype(torch::kBool)).tril();
  p = p.masked_fill(causal.logical_not(), 0.0);
  auto plogp = torch::where(p > 0, p * torch::log(p.clamp_min(1e-300)), torch::zeros_like(p));
  auto row_entropy = -plogp.sum(-1);              // (B, H, T)
  auto per_head = row_entropy.mean(2).mean(0);    // (H): equal row counts per batch, so a plain mean
  auto per_head_normalised = torch::zeros_like(per_head);
  if (T > 1) {
    auto row_length_log = torch::log(torch::arange(1, T + 1, options.dtype(torch::kDouble)));  // (T) log(i+1)
    auto normalised = row_entropy.slice(2, 1, T) / row_length_log.slice(0, 1, T);  // (B, H, T-1)
    per_head_normalised = normalised.mean(2).mean(0);
  }
  return torch::stack({per_head, per_head_normalised});  // (2, H)
}

HeadEntropy head_entropy_of(const torch::Tensor& entropy_tensor) {
  KEEL_CHECK(entropy_tensor.dim() == 2 && entropy_tensor.size(0) == 2,
             "head_entropy_of expects a (2, H) tensor, got " << entropy_tensor.sizes());
  const auto host = entropy_tensor.to(torch::kCPU, torch::kDouble).contiguous();
  const double* data = host.data_ptr<double>();
  const int64_t H = host.size(1);
  HeadEntropy out;
  out.entropy.assign(data, data + H);
  out.normalised_entropy.assign(data + H, data + 2 * H);
  return out;
}

HeadEntropy attention_entropy(const torch::Tensor& probs) {
  return head_entropy_of(attention_entropy_tensor(probs));
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
