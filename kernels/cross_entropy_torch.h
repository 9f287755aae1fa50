// LibTorch adapter of the fused cross-entropy kernels (cross_entropy.h): an autograd Function over
// (N, V) bf16 CUDA logits. Why an adapter: the kernels are raw-pointer CUDA (compiled in every
// build that has nvcc, CI included), while this glue needs a LibTorch with CUDA, which only the GPU
// nodes have. cross_entropy_torch_cuda.cpp implements it there; cross_entropy_torch_cpu.cpp is the
// stub of CPU-only LibTorch builds (fused_cross_entropy_built() false). model/lm_loss.h picks it.
#pragma once

#include <torch/torch.h>

namespace keel::kernels {

// True when this build has the CUDA implementation (LibTorch with CUDA and the kernels compiled).
bool fused_cross_entropy_built();

// True when fused_cross_entropy can take these logits: built, CUDA, bf16, 2-D (N, V) with
// contiguous columns.
bool fused_cross_entropy_supports(const torch::Tensor& logits);

// Mean cross-entropy (fp32 scalar) of logits (N, V) against targets (N) (any integer type; index
// -100 is ignored and left out of the mean, as LibTorch's default), differentiable w.r.t. logits.
// An out-of-range target makes the loss NaN instead of reading out of bounds. The backward runs the
// backward kernel on the current CUDA stream and produces a bf16 gradient.
// grad_over_logits: the backward writes the gradient over the logits' own storage (no (N, V)
// buffer); only for logits that nothing reads after the loss (no other autograd node saved them and
// the caller keeps no use of them), and the graph can then be back-propagated once only
// (a second backward throws instead of computing from overwritten logits).
// Throws keel::KeelError when !fused_cross_entropy_supports(logits) or shapes disagree.
torch::Tensor fused_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, bool grad_over_logits);

// The mean cross-entropy and the mean squared log-partition (PaLM's z-loss before its coefficient:
// mean over counted rows of logsumexp_j(logits[i, j])^2), both () fp32 and differentiable, from one
// forward and one backward kernel (the z term costs (N)-sized work). Same rules as
// fused_cross_entropy.
struct CrossEntropyTerms {
  torch::Tensor cross_entropy;  // ()
  torch::Tensor z;              // ()
};
CrossEntropyTerms fused_cross_entropy_terms(const torch::Tensor& logits, const torch::Tensor& targets,
                                            bool grad_over_logits);

}  // namespace keel::kernels
