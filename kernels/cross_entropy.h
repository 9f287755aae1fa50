// Fused cross-entropy over bf16 logits (the LM loss): raw-pointer CUDA kernels on a stream, no
// LibTorch. Why: LibTorch's path casts the (N, V) bf16 logits to fp32 (at gpt2-124m b32, N=32768,
// V=50304: 6.6 GB and 7.7 ms) and then runs log_softmax + nll forward and backward on fp32
// (17.5 ms). These kernels read the bf16 logits once in the forward (an online max / sum of
// exponentials per row, in fp32) and once more in the backward, which writes the bf16 gradient,
// optionally over the logits themselves, so no (N, V) buffer beyond the logits is needed.
// The LibTorch autograd adapter is kernels/cross_entropy_torch.h.
//
// Shapes: logits (N, V) bf16, row i at logits + i * row_stride (row_stride >= V elements, the
// columns contiguous); targets (N) int64; loss, row_max, log_sum (N) fp32. All on the device.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace keel::kernels {

// Rows whose target is this contribute loss 0 and gradient 0 and are left out of the mean
// (LibTorch's default ignore_index).
constexpr int64_t kCrossEntropyIgnoreIndex = -100;

// Forward. Per row i, in fp32, with m_i = max_j logits[i, j]:
//   row_max[i] = m_i and log_sum[i] = log(sum_j exp(logits[i, j] - m_i)), so that
//   lse_i = row_max[i] + log_sum[i] (kept in two parts: the backward computes (x - m_i) - log_sum[i],
//   exact even when |m_i| is huge and the fp32 lse itself would swallow log_sum, as LibTorch does);
//   loss[i] = (m_i - logits[i, targets[i]]) + log_sum[i]   if 0 <= targets[i] < V,
//   loss[i] = 0                                             if targets[i] == ignore_index,
//   loss[i] = row_max[i] = log_sum[i] = NaN                 for any other target: an out-of-range
//             target is never read through; the NaN reaches the mean (and the stability monitor)
//             instead of a device-side assert that would kill the CUDA context.
// Throws keel::KeelError on bad arguments or a failed launch. n == 0 launches nothing.
void cross_entropy_forward(const __nv_bfloat16* logits, int64_t row_stride, const int64_t* targets, int64_t n,
                           int64_t v, int64_t ignore_index, float* loss, float* row_max, float* log_sum,
                           cudaStream_t stream);

// Backward. With p_ij = exp((logits[i, j] - row_max[i]) - log_sum[i]) and lse_i = row_max[i] + log_sum[i]:
//   grad_logits[i, j] = p_ij * (scale[0] + z_scale[0] * lse_i) - [j == targets[i]] * scale[0]
// in fp32, stored as bf16 (round to nearest). z_scale (nullable: no z-loss) is the z-loss term's
// factor 2 * g_z / count, the gradient of g_z * mean_i(lse_i^2) (PaLM's z-loss) added to the
// cross-entropy's; rows with targets[i] == ignore_index get 0 (the row is
// not read); rows with another out-of-range target get NaN (their row_max is NaN). scale is a
// device pointer to one float (grad_output / count for the mean), so nothing waits on the host.
// grad_logits (row i at grad_logits + i * grad_row_stride) may be the logits buffer itself (same
// pointer and stride): each element is read and then written by the same thread. Any other overlap
// of the two is not allowed.
void cross_entropy_backward(const __nv_bfloat16* logits, int64_t row_stride, const int64_t* targets,
                            const float* row_max, const float* log_sum, const float* scale, const float* z_scale,
                            int64_t n, int64_t v, int64_t ignore_index, __nv_bfloat16* grad_logits,
                            int64_t grad_row_stride, cudaStream_t stream);

}  // namespace keel::kernels
