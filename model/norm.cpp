// LayerNorm and RMSNorm (see norm.h).
#include "model/norm.h"

#include "common/check.h"
#include "model/torch_compat.h"
#include "parallel/tensor_parallel_ops.h"

namespace keel {

NormImpl::NormImpl(int64_t width, const std::string& kind) : width_(width), rms_(kind == "rms") {
  KEEL_CHECK(kind == "layernorm" || kind == "rms", "unknown normalisation '" << kind << "' (layernorm or rms)");
  weight = register_parameter("weight", torch::ones({width}));
  if (!rms_) bias = register_parameter("bias", torch::zeros({width}));
}

torch::Tensor NormImpl::forward(const torch::Tensor& x) { return apply(x, weight, bias); }

torch::Tensor NormImpl::forward_tensor_parallel(const torch::Tensor& x, parallel::Communicator& tp) {
  return apply(x, parallel::copy_to_tensor_parallel(weight, tp),
               bias.defined() ? parallel::copy_to_tensor_parallel(bias, tp) : bias);
}

torch::Tensor NormImpl::apply(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) const {
  if (!rms_) return torch::layer_norm(x, {width_}, w, b, eps());
  // fp32 statistics whatever x is (bf16 under autocast): the mean of squares of a bf16 stream loses
  // the small components a norm exists to rescale.
  const auto xf = x.to(torch::kFloat);
  const auto normalised = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps());
  return (normalised * w.to(torch::kFloat)).to(x.scalar_type());
}

bool residual_norm_fused(const torch::Tensor& x, const torch::Tensor& delta, const NormImpl& norm) {
  return compat::cuda_autocast_enabled() && kernels::fused_residual_norm_supports(x, delta, norm.weight, norm.bias);
}

kernels::ResidualNormOutput residual_norm(const torch::Tensor& x, const torch::Tensor& delta, NormImpl& norm,
                                          bool fused) {
  if (fused && residual_norm_fused(x, delta, norm))
    return kernels::fused_residual_norm(x, delta, norm.weight, norm.bias, norm.rms(), norm.eps());
  auto h = delta.defined() ? x + delta : x;
  return {h, norm.forward(h)};
}

}  // namespace keel
