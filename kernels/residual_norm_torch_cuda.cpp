// CUDA builds: the fused residual add + norm as a LibTorch autograd Function (see residual_norm_torch.h).
// Forward: one kernel writes h (fp32, only when there is a delta), y (bf16) and the per-row (mean,
// rstd) as a (2, N) fp32 tensor. Saved: h (or the residual itself), the statistics and the weight.
// Backward: the gradient reaching y (bf16, from the next matmul) and the one reaching h from its
// other uses (fp32, the next residual add) go into one row kernel that writes the residual's fp32
// gradient and the delta's bf16 gradient, then the column kernels write the weight and bias gradients.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>

#include "common/check.h"
#include "kernels/residual_norm.h"
#include "kernels/residual_norm_torch.h"

namespace keel::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

__nv_bfloat16* bf16_ptr(const torch::Tensor& t) { return reinterpret_cast<__nv_bfloat16*>(t.data_ptr<at::BFloat16>()); }

cudaStream_t stream_of(const torch::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

struct FusedResidualNorm : public torch::autograd::Function<FusedResidualNorm> {
  // residual (N, C) fp32, delta (N, C) bf16 or empty, weight (C), bias (C) or empty
  // -> {h (N, C) fp32, y (N, C) bf16} with a delta, {y} without.
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& residual, const torch::Tensor& delta,
                               const torch::Tensor& weight, const torch::Tensor& bias, bool rms, double eps) {
    const c10::cuda::CUDAGuard guard(residual.device());
    const int64_t c = residual.size(-1), n = residual.numel() / c;
    const bool has_delta = delta.numel() > 0;
    const bool has_bias = bias.numel() > 0;
    torch::Tensor h = has_delta ? torch::empty_like(residual) : torch::Tensor();
    auto y = torch::empty(residual.sizes(), residual.options().dtype(torch::kBFloat16));
    auto stats = torch::empty({2, n}, residual.options());  // (2, N): mean, rstd
    residual_norm_forward(residual.data_ptr<float>(), has_delta ? bf16_ptr(delta) : nullptr, weight.data_ptr<float>(),
                          has_bias ? bias.data_ptr<float>() : nullptr, n, c, static_cast<float>(eps), rms,
                          has_delta ? h.data_ptr<float>() : nullptr, bf16_ptr(y), stats.data_ptr<float>(),
                          stats.data_ptr<float>() + n, stream_of(residual));
    ctx->save_for_backward({has_delta ? h : residual, stats, weight});
    ctx->saved_data["rms"] = rms;
    ctx->saved_data["has_delta"] = has_delta;
    ctx->saved_data["has_bias"] = has_bias;
    // An unused output's gradient stays undefined (ln_f's residual output is never read): the
    // backward then adds nothing instead of reading a materialised (N, C) tensor of zeros.
    ctx->set_materialize_grads(false);
    if (has_delta) return {h, y};
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const bool rms = ctx->saved_data["rms"].toBool();
    const bool has_delta = ctx->saved_data["has_delta"].toBool();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor h = saved[0], stats = saved[1], weight = saved[2];
    const torch::Tensor grad_h = has_delta ? grad_outputs[0] : torch::Tensor();  // (N, C) fp32 or undefined
    torch::Tensor grad_y = has_delta ? grad_outputs[1] : grad_outputs[0];         // (N, C) bf16 or undefined
    const c10::cuda::CUDAGuard guard(h.device());
    const int64_t c = h.size(-1), n = h.numel() / c;
    if (!grad_y.defined()) {
      // Only h was used downstream: the norm contributes nothing.
      if (!grad_h.defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
                                     torch::Tensor(), torch::Tensor()};
      return {grad_h, grad_h.to(torch::kBFloat16), torch::Tensor(), torch::Tensor(), torch::Tensor(),
              torch::Tensor()};
    }
    grad_y = grad_y.to(torch::kBFloat16).contiguous();
    const torch::Tensor grad_h_contiguous = grad_h.defined() ? grad_h.to(torch::kFloat).contiguous() : grad_h;
    auto grad_input = torch::empty(h.sizes(), h.options());  // (N, C) fp32
    torch::Tensor grad_delta = has_delta ? torch::empty(h.sizes(), h.options().dtype(torch::kBFloat16)) : torch::Tensor();
    auto grad_weight = torch::empty_like(weight);                            // (C)
    torch::Tensor grad_bias = has_bias ? torch::empty_like(weight) : torch::Tensor();
    auto partial = torch::empty({residual_norm_partial_floats(n, c)}, h.options());
    residual_norm_backward(bf16_ptr(grad_y), grad_h_contiguous.defined() ? grad_h_contiguous.data_ptr<float>() : nullptr,
                           h.data_ptr<float>(), stats.data_ptr<float>(), stats.data_ptr<float>() + n,
                           weight.data_ptr<float>(), n, c, rms, grad_input.data_ptr<float>(),
                           has_delta ? bf16_ptr(grad_delta) : nullptr, grad_weight.data_ptr<float>(),
                           has_bias ? grad_bias.data_ptr<float>() : nullptr, partial.data_ptr<float>(), stream_of(h));
    return {grad_input, grad_delta, grad_weight, grad_bias, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool fused_residual_norm_built() { return true; }

bool fused_residual_norm_supports(const torch::Tensor& residual, const torch::Tensor& delta,
                                  const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!residual.defined() || !residual.is_cuda() || residual.scalar_type() != torch::kFloat || residual.dim() < 1 ||
      residual.numel() == 0)
    return false;
  const auto device = residual.device();
  const int64_t c = residual.size(-1);
  if (delta.defined() && (delta.sizes() != residual.sizes() || delta.scalar_type() != torch::kBFloat16 ||
                          delta.device() != device))
    return false;
  auto vector_ok = [&](const torch::Tensor& t) {
    return t.dim() == 1 && t.size(0) == c && t.scalar_type() == torch::kFloat && t.device() == device;
  };
  return weight.defined() && vector_ok(weight) && (!bias.defined() || vector_ok(bias));
}

ResidualNormOutput fused_residual_norm(const torch::Tensor& residual, const torch::Tensor& delta,
                                       const torch::Tensor& weight, const torch::Tensor& bias, bool rms, double eps) {
  KEEL_CHECK(fused_residual_norm_supports(residual, delta, weight, bias),
             "fused_residual_norm: needs an fp32 CUDA residual (..., C), a bf16 delta of the same shape (or none) "
             "and fp32 (C) weights on its device; got residual "
                 << residual.sizes() << " " << residual.scalar_type() << " on " << residual.device());
  KEEL_CHECK(rms || bias.defined(), "fused_residual_norm: LayerNorm needs a bias");
  // LibTorch's custom Functions take no undefined tensors: an absent delta or bias goes in as an
  // empty tensor of its dtype (has_delta / has_bias below read numel() > 0).
  const auto outputs = FusedResidualNorm::apply(
      residual.contiguous(), delta.defined() ? delta.contiguous() : torch::empty({0}, residual.options().dtype(torch::kBFloat16)),
      weight.contiguous(), bias.defined() ? bias.contiguous() : torch::empty({0}, weight.options()), rms, eps);
  if (delta.defined()) return {outputs[0], outputs[1]};
  return {residual, outputs[0]};
}

}  // namespace keel::kernels
