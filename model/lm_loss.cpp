// The LM loss dispatch (see lm_loss.h).
#include "model/lm_loss.h"

#include "kernels/cross_entropy_torch.h"

namespace keel {

bool lm_cross_entropy_fused(const torch::Tensor& logits, bool fused) {
  return fused && kernels::fused_cross_entropy_supports(logits);
}

torch::Tensor lm_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, bool fused,
                               bool grad_over_logits) {
  if (lm_cross_entropy_fused(logits, fused)) return kernels::fused_cross_entropy(logits, targets, grad_over_logits);
  return torch::nn::functional::cross_entropy(logits.to(torch::kFloat), targets);
}

LmLossTerms lm_loss_terms(const torch::Tensor& logits, const torch::Tensor& targets, bool fused, bool grad_over_logits,
                          bool want_z) {
  if (!want_z) return {lm_cross_entropy(logits, targets, fused, grad_over_logits), torch::Tensor()};
  if (lm_cross_entropy_fused(logits, fused)) {
    auto terms = kernels::fused_cross_entropy_terms(logits, targets, grad_over_logits);
    return {terms.cross_entropy, terms.z};
  }
  const auto fp32 = logits.to(torch::kFloat);  // (N, V)
  const auto counted = targets.ne(-100);        // (N)
  const auto lse = torch::logsumexp(fp32, 1);   // (N)
  auto z = torch::where(counted, lse * lse, torch::zeros_like(lse)).sum() / counted.sum().to(torch::kFloat);
  return {torch::nn::functional::cross_entropy(fp32, targets), z};
}

}  // namespace keel
