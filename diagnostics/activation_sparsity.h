// Sparsity of MLP hidden activations: fraction of entries with |a| < threshold and fraction
// exactly 0 (ReLU dead units give exact zeros; GELU/SwiGLU give near-zeros).
#pragma once

#include <torch/torch.h>

namespace keel::diagnostics {

struct ActivationSparsity {
  double below_threshold = 0.0;  // fraction with |a| < threshold
  double exactly_zero = 0.0;     // fraction with a == 0
};

// activations: (B, T, hidden) or any shape; 0 entries -> both fractions 0.
ActivationSparsity activation_sparsity(const torch::Tensor& activations, double threshold);

}  // namespace keel::diagnostics
