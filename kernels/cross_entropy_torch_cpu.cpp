// CPU-only LibTorch builds: no fused cross-entropy (see cross_entropy_torch.h); callers keep
// LibTorch's cross_entropy.
#include "kernels/cross_entropy_torch.h"

#include "common/check.h"

namespace keel::kernels {

bool fused_cross_entropy_built() { return false; }

bool fused_cross_entropy_supports(const torch::Tensor&) { return false; }

torch::Tensor fused_cross_entropy(const torch::Tensor&, const torch::Tensor&, bool) {
  KEEL_CHECK(false, "fused_cross_entropy: this build's LibTorch has no CUDA");
  return {};
}

CrossEntropyTerms fused_cross_entropy_terms(const torch::Tensor&, const torch::Tensor&, bool) {
  KEEL_CHECK(false, "fused_cross_entropy_terms: this build's LibTorch has no CUDA");
  return {};
}

}  // namespace keel::kernels
