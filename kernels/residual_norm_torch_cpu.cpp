// CPU-only LibTorch builds: no fused residual norm (see residual_norm_torch.h); callers keep
// LibTorch's add and layer_norm.
#include "kernels/residual_norm_torch.h"

#include "common/check.h"

namespace keel::kernels {

bool fused_residual_norm_built() { return false; }

bool fused_residual_norm_supports(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                  const torch::Tensor&) {
  return false;
}

ResidualNormOutput fused_residual_norm(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                       const torch::Tensor&, bool, double) {
  KEEL_CHECK(false, "fused_residual_norm: this build's LibTorch has no CUDA");
  return {};
}

}  // namespace keel::kernels
