// LibTorch adapter of the fused residual add + norm kernels (residual_norm.h): an autograd Function
// over an fp32 CUDA residual stream and a bf16 sub-layer output, as a pre-norm block holds them
// under bf16 autocast. Like cross_entropy_torch.h: residual_norm_torch_cuda.cpp implements it where
// LibTorch has CUDA, residual_norm_torch_cpu.cpp is the stub of CPU-only builds. model/norm.h picks it.
#pragma once

#include <torch/torch.h>

namespace keel::kernels {

// True when this build has the CUDA implementation (LibTorch with CUDA and the kernels compiled).
bool fused_residual_norm_built();

// True when fused_residual_norm can take these: built; residual (..., C) fp32 on CUDA; delta
// undefined or the same shape, bf16, same device; weight (C) fp32 and bias undefined or (C) fp32 on
// that device.
bool fused_residual_norm_supports(const torch::Tensor& residual, const torch::Tensor& delta,
                                  const torch::Tensor& weight, const torch::Tensor& bias);

struct ResidualNormOutput {
  torch::Tensor residual;    // (..., C) fp32: residual + delta (the input residual when delta is undefined)
  torch::Tensor normalised;  // (..., C) bf16: norm(residual), ready for the next bf16 matmul
};

// h = residual + delta, y = LayerNorm(h) * weight + bias (rms = false, bias defined) or
// h * rsqrt(mean(h^2) + eps) * weight (rms = true), statistics in fp32; differentiable w.r.t.
// residual, delta, weight and bias. Non-contiguous inputs are copied to contiguous ones first.
// Throws keel::KeelError when !fused_residual_norm_supports(...).
ResidualNormOutput fused_residual_norm(const torch::Tensor& residual, const torch::Tensor& delta,
                                       const torch::Tensor& weight, const torch::Tensor& bias, bool rms, double eps);

}  // namespace keel::kernels
