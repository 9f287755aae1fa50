// Linearity score of a layer (see layer_linearity.h).
#include "diagnostics/layer_linearity.h"

#include <algorithm>
#include <limits>

#include "common/check.h"

namespace keel::diagnostics {
namespace {

// (..., d) -> (N, d) float64 on the tensor's own device (a GPU keeps the work: copying the probe's
// hidden states to the host and solving there cost ~0.9 s per layer for gpt2-124m), centred over
// tokens, unit Frobenius norm (zero stays zero).
torch::Tensor centred_unit(const torch::Tensor& t) {
  auto m = t.detach().to(torch::kDouble).reshape({-1, t.size(-1)});
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
  // The least-squares fit XA ~ Y leaves the part of Y outside X's column space. With the
  // eigendecomposition X^T X = V diag(l) V^T restricted to the eigenvalues l_r above a cut-off
  // (centring removes one rank; N may be < d), the fitted part of Y is X V_r l_r^-1 V_r^T X^T Y,
  // whose squared norm is ||l_r^-1/2 V_r^T X^T Y||^2; so ||XA - Y||^2 = 1 - that. Working on the
  // (d, d) Gram matrix instead of the (N, d) data keeps it cheap on CPUs and GPUs alike. The
  // cut-off eps * max(N, d) * l_max drops directions that are rounding noise in the Gram matrix.
  const auto gram = torch::matmul(X.transpose(0, 1), X);    // (d_in, d_in)
  const auto cross = torch::matmul(X.transpose(0, 1), Y);   // (d_in, d_out)
  auto eig = torch::linalg_eigh(gram);
  const auto& values = std::get<0>(eig);   // (d_in), ascending
  const auto& vectors = std::get<1>(eig);  // (d_in, d_in)
  const double cutoff = values.max().item<double>() * std::numeric_limits<double>::epsilon() *
                        static_cast<double>(std::max(X.size(0), X.size(1)));
  const auto kept = values > cutoff;
  const auto projected = torch::matmul(vectors.index({torch::indexing::Slice(), kept}).transpose(0, 1), cross);  // (r, d_out)
  const double explained = (projected.pow(2) / values.index({kept}).unsqueeze(1)).sum().item<double>();
  return std::clamp(explained, 0.0, 1.0);
}

double linearity_score_without_residual(const torch::Tensor& x, const torch::Tensor& y) {
  KEEL_CHECK(x.sizes() == y.sizes(), "residual removal needs equal shapes: " << x.sizes() << " vs " << y.sizes());
  return linearity_score(x, y.to(x.scalar_type()) - x);
}

}  // namespace keel::diagnostics
