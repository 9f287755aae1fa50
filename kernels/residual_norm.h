// Fused residual add + normalisation (LayerNorm or RMSNorm): raw-pointer CUDA kernels on a stream,
// no LibTorch. Why: in a pre-norm block under bf16 autocast the residual stream is fp32 and each
// sub-layer's output is bf16, so LibTorch's path runs three kernels per norm (the add, the fp32
// layer_norm, then autocast's cast of its output to bf16 for the next matmul) and three more in
// the backward (layer_norm_backward, the sum of the two gradients reaching the residual, the bf16
// cast of the sub-layer's gradient). These kernels do each direction in one row pass (plus a small
// deterministic column reduction for the weight and bias gradients): the forward reads the residual
// and the delta once and writes the new residual (fp32) and the normalised bf16 output; the backward
// reads the output gradient once and writes the residual's and the delta's gradients together.
// The LibTorch autograd adapter is kernels/residual_norm_torch.h.
//
// Shapes: n rows of width c, each tensor contiguous (row i at + i * c). All on the device.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace keel::kernels {

// Forward. Per row i, in fp32:
//   h      = residual[i] + delta[i]           (delta nullable: h = residual, and h_out is not written)
//   layernorm: mean[i] = mean(h), rstd[i] = 1 / sqrt(var(h) + eps)   (biased variance, as LibTorch)
//              y[i] = (h - mean[i]) * rstd[i] * weight + bias
//   rms:       mean[i] = 0, rstd[i] = 1 / sqrt(mean(h^2) + eps)
//              y[i] = h * rstd[i] * weight                              (bias unused, may be null)
// stored as h_out (n, c) fp32 (nullable only when delta is null) and y (n, c) bf16 (round to nearest).
// mean and rstd (n) fp32 are kept for the backward. Throws keel::KeelError on bad arguments or a
// failed launch; n == 0 launches nothing.
void residual_norm_forward(const float* residual, const __nv_bfloat16* delta, const float* weight, const float* bias,
                           int64_t n, int64_t c, float eps, bool rms, float* h_out, __nv_bfloat16* y, float* mean,
                           float* rstd, cudaStream_t stream);

// Backward of the normalisation for rows whose forward saved (h, mean, rstd). With
// xhat = (h - mean) * rstd and g = grad_y * weight (fp32):
//   layernorm: grad_h = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat))
//   rms:       grad_h = rstd * (g - xhat * mean_j(g * xhat))
//   grad_input[i] = grad_h + grad_residual_out[i]   (grad_residual_out: the gradient reaching the
//                   forward's h from its other uses; nullable = 0)
// stored in fp32 as grad_input (n, c) and, when grad_delta is not null, rounded to bf16 as
// grad_delta (n, c) (the delta's gradient is the same sum: h = residual + delta).
// grad_weight (c) = sum_i grad_y * xhat, grad_bias (c) = sum_i grad_y (nullable; rms: not written),
// both fp32, overwritten (not accumulated), summed in a fixed order so the result is bit-identical
// from run to run (resume exactness needs that; no atomics). partial: scratch of at least
// residual_norm_partial_floats(n, c) floats.
void residual_norm_backward(const __nv_bfloat16* grad_y, const float* grad_residual_out, const float* h,
                            const float* mean, const float* rstd, const float* weight, int64_t n, int64_t c, bool rms,
                            float* grad_input, __nv_bfloat16* grad_delta, float* grad_weight, float* grad_bias,
                            float* partial, cudaStream_t stream);

// Floats of scratch residual_norm_backward needs for the weight and bias column sums.
int64_t residual_norm_partial_floats(int64_t n, int64_t c);

}  // namespace keel::kernels
