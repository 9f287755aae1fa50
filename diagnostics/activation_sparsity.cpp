// Sparsity of MLP hidden activations (see activation_sparsity.h).
#include "diagnostics/activation_sparsity.h"

namespace keel::diagnostics {

ActivationCounts activation_counts(const torch::Tensor& activations, double threshold) {
  ActivationCounts out;
  out.total = activations.numel();
  if (out.total == 0) return out;
  auto a = activations.detach();
  out.below_threshold = (a.abs() < threshold).sum().item<int64_t>();
  out.exactly_zero = (a == 0).sum().item<int64_t>();
  return out;
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
