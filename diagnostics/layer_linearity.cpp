// Linearity score of a layer (see layer_linearity.h).
#include "diagnostics/layer_linearity.h"

#include <algorithm>
#include <limits>

#include "common/check.h"

namespace keel::diagnostics {
namespace {

// (..., d) -> (N, d) float64 on the tensor's own device (a GPU keeps the work: copying the probe's
// hidden states to the host and solving there cost ~0.9 s per layer for gpt2-124m), centred over
// tokens, unit Frobenius norm (zero stays zero). Also returns the norm before scaling (a 0-dim
// tensor, so nothing waits for the device).
std::pair<torch::Tensor, torch::Tensor> centred_unit(const torch::Tensor& t) {
  auto m = t.detach().to(torch::kDouble).reshape({-1, t.size(-1)});
  m = m - m.mean(0, /*keepdim=*/true);
  auto norm = m.norm();
  return {m / norm.clamp_min(std::numeric_limits<double>::min()), norm};
}

// The least-squares fit XA ~ Y leaves the part of Y outside X's column space. With the
// eigendecomposition X^T X = V diag(l) V^T restricted to the eigenvalues l_r above a cut-off
// (centring removes one rank; N may be < d), the fitted part of Y is X V_r l_r^-1 V_r^T X^T Y,
// whose squared norm is ||l_r^-1/2 V_r^T X^T Y||^2; so ||XA - Y||^2 = 1 - that. Working on the
// (d, d) Gram matrix instead of the (N, d) data keeps it cheap on CPUs and GPUs alike. The
// cut-off eps * max(N, d) * l_max drops directions that are rounding noise in the Gram matrix.
struct InputBasis {
  torch::Tensor X;            // (N, d_in) centred, unit norm
  torch::Tensor vectors;      // (d_in, d_in) eigenvectors of X^T X
  torch::Tensor inverse_kept; // (d_in) 1 / eigenvalue where kept, else 0
};

InputBasis input_basis(const torch::Tensor& x) {
  InputBasis basis;
  basis.X = centred_unit(x).first;
  const auto gram = torch::matmul(basis.X.transpose(0, 1), basis.X);  // (d_in, d_in)
  auto eig = torch::linalg_eigh(gram);
  const auto& values = std::get<0>(eig);  // (d_in), ascending
  basis.vectors = std::get<1>(eig);
  const double scale = std::numeric_limits<double>::epsilon() *
                       static_cast<double>(std::max(basis.X.size(0), basis.X.size(1)));
  const auto kept = values > values.max() * scale;
  basis.inverse_kept = torch::where(kept, 1.0 / values, torch::zeros_like(values));
  return basis;
}

// The score for output y against the basis, a 0-dim float64 tensor in [0, 1].
torch::Tensor explained(const InputBasis& basis, const torch::Tensor& y) {
  auto [Y, norm] = centred_unit(y);                                  // (N, d_out)
  const auto cross = torch::matmul(basis.X.transpose(0, 1), Y);       // (d_in, d_out)
  const auto projected = torch::matmul(basis.vectors.transpose(0, 1), cross);  // (d_in, d_out)
  auto score = (projected.pow(2) * basis.inverse_kept.unsqueeze(1)).sum().clamp(0.0, 1.0);
  // A constant output is trivially linear.
  return torch::where(norm == 0, torch::ones_like(score), score);
}

void check_shapes(const torch::Tensor& x, const torch::Tensor& y) {
  KEEL_CHECK(x.dim() >= 2 && y.dim() >= 2, "linearity_score expects (..., d) tensors");
  KEEL_CHECK(x.numel() / x.size(-1) == y.numel() / y.size(-1),
             "linearity_score: token counts differ: " << x.sizes() << " vs " << y.sizes());
}

}  // namespace

double linearity_score(const torch::Tensor& x, const torch::Tensor& y) {
  check_shapes(x, y);
  return explained(input_basis(x), y).item<double>();
}

double linearity_score_without_residual(const torch::Tensor& x, const torch::Tensor& y) {
  KEEL_CHECK(x.sizes() == y.sizes(), "residual removal needs equal shapes: " << x.sizes() << " vs " << y.sizes());
  return linearity_score(x, y.to(x.scalar_type()) - x);
}

torch::Tensor linearity_scores(const torch::Tensor& x, const torch::Tensor& y) {
  check_shapes(x, y);
  KEEL_CHECK(x.sizes() == y.sizes(), "residual removal needs equal shapes: " << x.sizes() << " vs " << y.sizes());
  const InputBasis basis = input_basis(x);
  return torch::stack({explained(basis, y), explained(basis, y.to(x.scalar_type()) - x)});
}

}  // namespace keel::diagnostics
