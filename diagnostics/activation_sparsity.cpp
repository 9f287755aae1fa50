// Sparsity of MLP hidden activations (see activation_sparsity.h).
#include "diagnostics/activation_sparsity.h"

namespace keel::diagnostics {

ActivationSparsity activation_sparsity(const torch::Tensor& activations, double threshold) {
  ActivationSparsity out;
  const int64_t n = activations.numel();
  if (n == 0) return out;
  auto a = activations.detach();
  out.below_threshold =
      static_cast<double>((a.abs() < threshold).sum().item<int64_t>()) / static_cast<double>(n);
  out.exactly_zero = static_cast<double>((a == 0).sum().item<int64_t>()) / static_cast<double>(n);
  return out;
}

}  // namespace keel::diagnostics
