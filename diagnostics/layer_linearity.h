// Linearity score of a layer ("Your Transformer is Secretly Linear", arXiv 2405.12250).
//
// X = layer input, Y = layer output, both (N tokens, d) (any leading dims are flattened to tokens).
// Each is centred over tokens and divided by its Frobenius norm; A = argmin_A ||X A - Y||_F
// (least squares, float64, on the tensors' own device); score = 1 - ||X A - Y||_F^2, in [0, 1]: 1
// for an exactly linear map, near 0 when no linear map explains Y. Invariant to scaling X or Y.
// The residual-removed variant uses Y - X (the block's contribution) as the output.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace keel::diagnostics {

// Whether the fit is exact whatever the layer computes: centred, N tokens span at most N - 1
// directions, so with N - 1 <= d (input width) some A maps X onto any Y and every score reads 1.
// A probe of so few tokens says nothing about linearity (keel diagnose warns).
inline bool linearity_fit_is_exact(int64_t tokens, int64_t width) { return tokens <= width + 1; }

// x, y: (..., d) with the same leading shape; returns the score in [0, 1].
double linearity_score(const torch::Tensor& x, const torch::Tensor& y);

// linearity_score(x, y - x): linearity of the layer with the residual connection removed.
double linearity_score_without_residual(const torch::Tensor& x, const torch::Tensor& y);

// Both scores of L layers, as an (L, 2) float64 tensor on the inputs' device [with residual,
// without], without a host synchronisation: the diagnostics pass reads every value in one copy at
// the end. A layer's two scores share its X, so they share its eigendecomposition, and the L
// eigendecompositions are one batched call (the costly part on a GPU). xs[l], ys[l]: (..., d), all
// of one shape.
torch::Tensor linearity_scores(const std::vector<torch::Tensor>& xs, const std::vector<torch::Tensor>& ys);

}  // namespace keel::diagnostics
