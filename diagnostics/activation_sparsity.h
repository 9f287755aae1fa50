// Sparsity of MLP hidden activations: fraction of entries with |a| < threshold and fraction
// exactly 0 (ReLU dead units give exact zeros; GELU/SwiGLU give near-zeros). The counts are kept
// apart from the fractions so that slices of one activation tensor (tensor-parallel ranks each
// hold hidden/tp units) can be summed before dividing.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace keel::diagnostics {

struct ActivationCounts {
  int64_t total = 0;           // entries looked at
  int64_t below_threshold = 0; // entries with |a| < threshold
  int64_t exactly_zero = 0;    // entries with a == 0
};

struct ActivationSparsity {
  double below_threshold = 0.0;  // fraction with |a| < threshold
  double exactly_zero = 0.0;     // fraction with a == 0
};

// activations: (B, T, hidden) or any shape.
ActivationCounts activation_counts(const torch::Tensor& activations, double threshold);
// The same counts as a (3) int64 tensor on the activations' device [total, below, zero], without a
// host synchronisation (the diagnostics pass reads every layer at once; TP ranks sum it in place).
torch::Tensor activation_counts_tensor(const torch::Tensor& activations, double threshold);
// A (3) tensor from activation_counts_tensor as ActivationCounts (reads it to the host).
ActivationCounts counts_of(const torch::Tensor& counts_tensor);
// The fractions of counts (summed over slices if need be); 0 entries -> both fractions 0.
ActivationSparsity sparsity_of(const ActivationCounts& counts);
// sparsity_of(activation_counts(activations, threshold)).
ActivationSparsity activation_sparsity(const torch::Tensor& activations, double threshold);

}  // namespace keel::diagnostics
