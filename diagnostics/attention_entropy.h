// Attention entropy per head, from explicit causal attention probabilities.
//
// For query position i the causal row is p_{i,0..i}; its entropy is H_i = -sum_{j<=i} p_ij log p_ij
// (nats, 0 log 0 = 0). A head's entropy is the mean of H_i over batch and all query positions.
// The normalised entropy divides H_i by log(i+1), the entropy of the uniform row, so it lies in
// [0, 1] (1 = uniform, 0 = one-hot). Row 0 has a single key (log 1 = 0): its normalised entropy is
// undefined and row 0 is EXCLUDED from the normalised mean (with T == 1 the normalised entropy is
// reported as 0). "Entropic overload" (ReLU's Revival, arXiv 2410.09637): the fraction of heads
// whose normalised entropy exceeds a threshold, i.e. heads that attend almost uniformly.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace keel::diagnostics {

struct HeadEntropy {
  std::vector<double> entropy;             // H values, mean row entropy per head (nats)
  std::vector<double> normalised_entropy;  // H values in [0, 1], rows i >= 1 only
};

// probs: (B, H, T, T), rows summing to 1 over j <= i, zero above the diagonal (any float dtype).
HeadEntropy attention_entropy(const torch::Tensor& probs);

// The same as a (2, H) float64 tensor on the probabilities' device (row 0: entropy, row 1:
// normalised entropy), without a host synchronisation: the diagnostics pass reads all layers at once.
torch::Tensor attention_entropy_tensor(const torch::Tensor& probs);
// A (2, H) tensor from attention_entropy_tensor as HeadEntropy (reads it to the host).
HeadEntropy head_entropy_of(const torch::Tensor& entropy_tensor);

// Fraction of heads (over all layers given) whose normalised entropy is > threshold; 0 when empty.
double entropy_overload_fraction(const std::vector<HeadEntropy>& layers, double threshold);

}  // namespace keel::diagnostics
