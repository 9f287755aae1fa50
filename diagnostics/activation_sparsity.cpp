// Sparsity of MLP hidden activations (see activation_sparsity.h).
#include "diagnostics/activation_sparsity.h"

#include "common/check.h"

namespace keel::diagnostics {

torch::Tensor activation_counts_tensor(const torch::Tensor& activations, double threshold) {
  auto a = activations.detach();
  const auto options = torch::TensorOptions().device(a.device()).dtype(torch::kLong);
  if (a.numel() == 0) return torch::zeros({3}, options);
  return torch::stack({torch::full({}, a.numel(), options), (a.abs() < threshold).sum(), (a == 0).sum()});
}

ActivationCounts counts_of(const torch::Tensor& counts_tensor) {
  KEEL_CHECK(counts_tensor.numel() == 3, "counts_of expects a (3) tensor, got " << counts_tensor.sizes());
  const auto host = counts_tensor.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* data = host.data_ptr<int64_t>();
  return {data[0], data[1], data[2]};
}

ActivationCounts activation_counts(const torch::Tensor& activations, double threshold) {
  return counts_of(activation_counts_tensor(activations, threshold));
}

ActivationSparsity sparsity_of(const ActivationCounts& counts) {
  ActivationSparsity out;
  if (counts.total == 0) return out;
  const double n = static_cast<double>(counts.total);
  out.below_threshold = static_cast<double>(counts.below_threshold) / n;
  out.exactly_zero = static_cast<double>(counts.exactly_zero) / n;
  return out;
}

ActivationSparsity activation_sparsity(const torch::Tensor& activations, double threshold) {
  return sparsity_of(activation_counts(activations, threshold));
}

}  // namespace keel::diagnostics
