// Megatron-style tensor-parallel building blocks as autograd functions over a Communicator
// (arXiv 1909.08053, section 3):
//   copy_to_tensor_parallel      f: identity forward, all-reduce of the gradient backward. Put in
//                                front of a column-parallel linear whose input every TP rank holds.
//   reduce_from_tensor_parallel  g: all-reduce forward, identity backward. Put after a row-parallel
//                                linear whose partial outputs must be summed.
//   vocab_parallel_cross_entropy the mean next-token cross-entropy when each TP rank holds a
//                                contiguous slice of the vocabulary's logits, without gathering
//                                them: max, sum of exponentials and the target logit are reduced.
// On a communicator of size 1 every function is the plain single-process computation.
#pragma once

#include <torch/torch.h>

#include "parallel/communicator.h"

namespace keel::parallel {

torch::Tensor copy_to_tensor_parallel(const torch::Tensor& x, Communicator& tp);
torch::Tensor reduce_from_tensor_parallel(const torch::Tensor& x, Communicator& tp);

// logits: (N, V_local) this rank's vocabulary slice [vocab_start, vocab_start + V_local);
// targets: (N) global token ids. Returns the mean over N of -log softmax(full logits)[target],
// computed in float32, identical on every TP rank.
// The cross-entropy above and the z-loss term (mean over N of lse_i^2, lse_i the log-partition of
// row i over the full vocabulary), both () fp32 and differentiable, identical on every TP rank.
struct VocabParallelLossTerms {
  torch::Tensor cross_entropy;
  torch::Tensor z;
};
VocabParallelLossTerms vocab_parallel_cross_entropy_terms(const torch::Tensor& logits, const torch::Tensor& targets,
                                                          int64_t vocab_start, Communicator& tp);
torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                           int64_t vocab_start, Communicator& tp);

}  // namespace keel::parallel
