// CUDA builds: the fused cross-entropy as a LibTorch autograd Function (see cross_entropy_torch.h).
// Forward: the forward kernel writes per-row loss and the row's log-sum-exp as (max, log_sum), each
// (N) fp32; the mean is loss.sum() / count on the device (count = targets not equal to -100), so
// nothing waits on the host. Saved for the backward: the logits, targets, the (2, N) lse parts and
// count (no fp32 copy of the logits anywhere).
// Backward: scale = grad_output / count (a device scalar) and one backward kernel writing the bf16
// gradient, over the logits or into a fresh (N, V) bf16 buffer.
// The z-loss term (mean over counted rows of lse^2) is a second output built from the same lse
// parts, (N)-sized work; its gradient enters the one backward kernel as z_scale = 2 g_z / count.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>

#include "common/check.h"
#include "kernels/cross_entropy.h"
#include "kernels/cross_entropy_torch.h"

namespace keel::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const __nv_bfloat16* bf16_ptr(const torch::Tensor& t) {
  return reinterpret_cast<const __nv_bfloat16*>(t.data_ptr<at::BFloat16>());
}

struct FusedCrossEntropy : public torch::autograd::Function<FusedCrossEntropy> {
  // logits (N, V) bf16 CUDA, targets (N) int64 on the same device -> {() cross-entropy, () z} fp32
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& targets,
                               bool grad_over_logits) {
    const c10::cuda::CUDAGuard guard(logits.device());
    const int64_t n = logits.size(0), v = logits.size(1);
    auto float_options = logits.options().dtype(torch::kFloat);
    auto loss = torch::empty({n}, float_options);    // (N)
    auto lse = torch::empty({2, n}, float_options);  // (2, N): row max, log sum of exp(x - max)
    cross_entropy_forward(bf16_ptr(logits), logits.stride(0), targets.data_ptr<int64_t>(), n, v,
                          kCrossEntropyIgnoreIndex, loss.data_ptr<float>(), lse.data_ptr<float>(),
                          lse.data_ptr<float>() + n, c10::cuda::getCurrentCUDAStream(logits.device().index()).stream());
    const auto counted = targets.ne(kCrossEntropyIgnoreIndex);                 // (N) bool
    auto count = counted.sum().to(torch::kFloat);                               // () on the device
    const auto row_lse = lse[0] + lse[1];                                       // (N)
    auto z = torch::where(counted, row_lse * row_lse, torch::zeros_like(row_lse)).sum() / count;
    ctx->save_for_backward({logits, targets, lse, count});
    ctx->saved_data["grad_over_logits"] = grad_over_logits;
    ctx->saved_data["backward_done"] = false;
    return {loss.sum() / count, z};  // all rows ignored: 0 / 0 = NaN, as LibTorch
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const bool in_place = ctx->saved_data["grad_over_logits"].toBool();
    KEEL_CHECK(!(in_place && ctx->saved_data["backward_done"].toBool()),
               "fused cross-entropy: a second backward through a graph whose logits were overwritten by the "
               "first one's gradient (retain_graph is not supported with grad_over_logits)");
    ctx->saved_data["backward_done"] = true;
    if (!grad_outputs[0].defined() && !grad_outputs[1].defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor logits = saved[0].detach(), targets = saved[1], lse = saved[2], count = saved[3];
    const c10::cuda::CUDAGuard guard(logits.device());
    const int64_t n = logits.size(0), v = logits.size(1);
    auto scale = grad_outputs[0].defined() ? (grad_outputs[0].to(torch::kFloat) / count).contiguous()
                                           : torch::zeros({}, count.options());  // () on the device
    torch::Tensor z_scale;  // () 2 g_z / count, when the z term is in the graph
    if (grad_outputs[1].defined()) z_scale = (2.0 * grad_outputs[1].to(torch::kFloat) / count).contiguous();
    torch::Tensor grad = in_place ? logits : torch::empty({n, v}, logits.options());  // (N, V) bf16
    cross_entropy_backward(bf16_ptr(logits), logits.stride(0), targets.data_ptr<int64_t>(), lse.data_ptr<float>(),
                           lse.data_ptr<float>() + n, scale.data_ptr<float>(),
                           z_scale.defined() ? z_scale.data_ptr<float>() : nullptr, n, v, kCrossEntropyIgnoreIndex,
                           reinterpret_cast<__nv_bfloat16*>(grad.data_ptr<at::BFloat16>()), grad.stride(0),
                           c10::cuda::getCurrentCUDAStream(logits.device().index()).stream());
    return {grad, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool fused_cross_entropy_built() { return true; }

bool fused_cross_entropy_supports(const torch::Tensor& logits) {
  return logits.defined() && logits.is_cuda() && logits.scalar_type() == torch::kBFloat16 && logits.dim() == 2 &&
         (logits.size(1) <= 1 || logits.stride(1) == 1) && logits.stride(0) >= logits.size(1);
}

CrossEntropyTerms fused_cross_entropy_terms(const torch::Tensor& logits, const torch::Tensor& targets,
                                            bool grad_over_logits) {
  KEEL_CHECK(fused_cross_entropy_supports(logits),
             "fused_cross_entropy: needs (N, V) bf16 CUDA logits with contiguous columns, got "
                 << logits.sizes() << " " << logits.scalar_type() << " on " << logits.device());
  KEEL_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0),
             "fused_cross_entropy: targets " << targets.sizes() << " do not match logits " << logits.sizes());
  KEEL_CHECK(!at::isFloatingType(targets.scalar_type()) && targets.scalar_type() != torch::kBool,
             "fused_cross_entropy: targets must be integer ids, got " << targets.scalar_type());
  auto ids = targets.to(logits.device(), torch::kLong).contiguous();  // (N) int64
  const auto outputs = FusedCrossEntropy::apply(logits, ids, grad_over_logits);
  return {outputs[0], outputs[1]};
}

torch::Tensor fused_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, bool grad_over_logits) {
  return fused_cross_entropy_terms(logits, targets, grad_over_logits).cross_entropy;
}

}  // namespace keel::kernels
