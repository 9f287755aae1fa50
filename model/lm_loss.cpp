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

}  // namespace keel
