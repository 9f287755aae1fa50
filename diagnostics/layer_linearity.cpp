// Linearity score of a layer (see layer_linearity.h).
#include "diagnostics/layer_linearity.h"

#include <algorithm>

#include "common/check.h"

namespace keel::diagnostics {
namespace {

// (..., d) -> (N, d) float64 CPU, centred over tokens, unit Frobenius norm (zero stays zero).
torch::Tensor centred_unit(const torch::Tensor& t) {
  auto m = t.detach().to(torch::kCPU, torch::kDouble).reshape({-1, t.size(-1)});
  m = m - m.mean(0, /*keepdim=*/true);
  const double norm = m.norm().item<double>();
  return norm > 0 ? m / norm : m;
}

}  // namespace

double linearity_score(const torch::Tensor& x, const torch::Tensor& y) {
  KEEL_CHECK(x.dim() >= 2 && y.dim() >= 2, "linearity_score expects (..., d) tensors");
  KEEL_CHECK(x.numel() / x.size(-1) == y.numel() / y.size(-1),
             "linearity_score: token counts differ: " << x.sizes() << " vs " << y.sizes());
  auto X = centred_unit(x);  // (N, d_in)
  auto Y = centred_unit(y);  // (N, d_out)
  if (Y.norm().item<double>() == 0) return 1.0;  // a constant output is trivially linear
  // Least squares with the rank-revealing SVD driver: handles rank-deficient X (centring removes
  // one rank; N may be < d). Same API in LibTorch 1.13 and 2.x.
  auto solution = std::get<0>(torch::linalg_lstsq(X, Y, c10::optional<double>(), c10::optional<c10::string_view>("gelsd")));  // (d_in, d_out)
  auto residual = torch::matmul(X, solution) - Y;
  const double score = 1.0 - residual.pow(2).sum().item<double>();
  return std::clamp(score, 0.0, 1.0);
}

double linearity_score_without_residual(const torch::Tensor& x, const torch::Tensor& y) {
  KEEL_CHECK(x.sizes() == y.sizes(), "residual removal needs equal shapes: " << x.sizes() << " vs " << y.sizes());
  return linearity_score(x, y.to(x.scalar_type()) - x);
}

}  // namespace keel::diagnostics
