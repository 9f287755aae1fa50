// Linearity score of a layer (see layer_linearity.h).
#include "diagnostics/layer_linearity.h"

#include <algorithm>
#include <limits>

#include "common/check.h"

namespace keel::diagnostics {
namespace {

// L tensors (..., d) -> (L, N, d) float64 on their own device (a GPU keeps the work: copying the
// probe's hidden states to the host and solving there cost ~0.9 s per layer for gpt2-124m),
// centred over tokens, each of unit Frobenius norm (zero stays zero). Also returns the norms
// before scaling, (L), so nothing waits for the device.
std::pair<torch::Tensor, torch::Tensor> centred_unit(const std::vector<torch::Tensor>& ts) {
  std::vector<torch::Tensor> flat;
  for (const auto& t : ts) flat.push_back(t.detach().to(torch::kDouble).reshape({-1, t.size(-1)}));
  auto m = torch::stack(flat);                 // (L, N, d)
  m = m - m.mean(1, /*keepdim=*/true);
  auto norm = m.pow(2).sum({1, 2}).sqrt();     // (L)
  return {m / norm.clamp_min(std::numeric_limits<double>::min()).view({-1, 1, 1}), norm};
}

// The least-squares fit XA ~ Y leaves the part of Y outside X's column space. With the
// eigendecomposition X^T X = V diag(l) V^T restricted to the eigenvalues l_r above a cut-off
// (centring removes one rank; N may be < d), the fitted part of Y is X V_r l_r^-1 V_r^T X^T Y,
// whose squared norm is ||l_r^-1/2 V_r^T X^T Y||^2; so ||XA - Y||^2 = 1 - that. Working on the
// (d, d) Gram matrix instead of the (N, d) data keeps it cheap on CPUs and GPUs alike. The
// cut-off eps * max(N, d) * l_max drops directions that are rounding noise in the Gram matrix.
// Batched over layers: one eigh call for all of them (the costly part on a GPU).
struct InputBasis {
  torch::Tensor X;             // (L, N, d_in) centred, unit norm
  torch::Tensor vectors;       // (L, d_in, d_in) eigenvectors of X^T X
  torch::Tensor inverse_kept;  // (L, d_in) 1 / eigenvalue where kept, else 0
};

InputBasis input_basis(const std::vector<torch::Tensor>& xs) {
  InputBasis basis;
  basis.X = centred_unit(xs).first;
  const auto gram = torch::matmul(basis.X.transpose(1, 2), basis.X);  // (L, d_in, d_in)
  auto eig = torch::linalg_eigh(gram);
  const auto& values = std::get<0>(eig);  // (L, d_in), ascending
  basis.vectors = std::get<1>(eig);
  const double scale = std::numeric_limits<double>::epsilon() *
                       static_cast<double>(std::max(basis.X.size(1), basis.X.size(2)));
  const auto kept = values > std::get<0>(values.max(1, /*keepdim=*/true)) * scale;
  basis.inverse_kept = torch::where(kept, 1.0 / values, torch::zeros_like(values));
  return basis;
}

// The scores for outputs ys against the basis, (L) float64 in [0, 1].
torch::Tensor explained(const InputBasis& basis, const std::vector<torch::Tensor>& ys) {
  auto [Y, norm] = centred_unit(ys);                                            // (L, N, d_out)
  const auto cross = torch::matmul(basis.X.transpose(1, 2), Y);                 // (L, d_in, d_out)
  const auto projected = torch::matmul(basis.vectors.transpose(1, 2), cross);   // (L, d_in, d_out)
  auto score = (projected.pow(2) * basis.inverse_kept.unsqueeze(2)).sum({1, 2}).clamp(0.0, 1.0);
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
  return explained(input_basis({x}), {y}).item<double>();
}

double linearity_score_without_residual(const torch::Tensor& x, const torch::Tensor& y) {
  KEEL_CHECK(x.sizes() == y.sizes(), "residual removal needs equal shapes: " << x.sizes() << " vs " << y.sizes());
  return linearity_score(x, y.to(x.scalar_type()) - x);
}

torch::Tensor linearity_scores(const std::vector<torch::Tensor>& xs, const std::vector<torch::Tensor>& ys) {
  KEEL_CHECK(!xs.empty() && xs.size() == ys.size(),
             "linearity_scores needs as many outputs as inputs, got " << xs.size() << " and " << ys.size());
  std::vector<torch::Tensor> contributions;
  for (size_t l = 0; l < xs.size(); ++l) {
    check_shapes(xs[l], ys[l]);
    KEEL_CHECK(xs[l].sizes() == ys[l].sizes() && xs[l].sizes() == xs[0].sizes(),
               "linearity_scores: every layer's input and output must have one shape: " << xs[l].sizes() << " vs "
                                                                                         << ys[l].sizes());
    contributions.push_back(ys[l].to(xs[l].scalar_type()) - xs[l]);
  }
  const InputBasis basis = input_basis(xs);
  return torch::stack({explained(basis, ys), explained(basis, contributions)}, 1);  // (L, 2)
}

}  // namespace keel::diagnostics
