// lm_cross_entropy: the one entry point of the (unsplit) LM loss, used by GptImpl::loss and the
// activation-checkpointed loss. bf16 logits on CUDA take the fused kernels of kernels/ (no fp32 copy
// of the (N, V) logits, one read pass forward, one read + write pass backward); everything else
// (CPU, fp32 logits, builds without CUDA LibTorch, or fused=false) keeps LibTorch's
// cross_entropy on fp32 logits. Tensor-parallel models use parallel::vocab_parallel_cross_entropy.
#pragma once

#include <torch/torch.h>

namespace keel {

// True when lm_cross_entropy(logits, ...) would take the fused kernels.
bool lm_cross_entropy_fused(const torch::Tensor& logits, bool fused = true);

// Mean cross-entropy (fp32 scalar) of logits (N, V) against targets (N) int64 (-100 ignored).
// fused: allow the fused kernels (train.fused_cross_entropy). grad_over_logits: the caller
// guarantees nothing reads the logits after the loss, so the fused backward may write the bf16
// gradient over them (saves an (N, V) bf16 buffer; the graph then supports one backward only).
torch::Tensor lm_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, bool fused = true,
                               bool grad_over_logits = false);

// The cross-entropy and, with want_z, the z-loss term: mean over counted rows (target != -100) of
// logsumexp_j(logits[i, j])^2 (PaLM, arXiv 2204.02311; OLMo 2 trains with 1e-5 x it), both ()
// fp32 and differentiable. The fused path gets z from the kernels' own log-partition (no extra
// pass over the logits); LibTorch's path computes a logsumexp of its fp32 logits. z undefined
// without want_z.
struct LmLossTerms {
  torch::Tensor cross_entropy;
  torch::Tensor z;
};
LmLossTerms lm_loss_terms(const torch::Tensor& logits, const torch::Tensor& targets, bool fused, bool grad_over_logits,
                          bool want_z);

}  // namespace keel
