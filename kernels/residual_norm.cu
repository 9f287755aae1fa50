// Fused residual add + LayerNorm / RMSNorm kernels (see residual_norm.h for the contract and why).
//
// Row kernels: one warp per row, four rows per block; lane l handles columns l, l + 32, ... so every
// warp-wide load is one coalesced 128-byte (fp32) or 64-byte (bf16) transaction. All arithmetic is
// fp32. The forward makes three passes over the row: the first reads residual + delta and writes h,
// the next two re-read h (the same thread wrote it, and a row is a few KB: it comes from L1/L2, not
// DRAM) for the two-pass variance (as accurate as Welford for the widths here, and simpler) and the
// output. The backward makes two passes: the sums mean(g) and mean(g * xhat), then the gradient.
// Column kernel: the weight and bias gradients are sums over rows; a (32 columns x 8 row-threads)
// block sums one chunk of rows per column into a partial, and a last kernel adds the chunks in
// order. No atomics: the result is the same bits on every run, which bit-exact resume needs.
#include "kernels/residual_norm.h"

#include <cuda_bf16.h>

#include <climits>
#include <cstdint>

#include "common/cuda_check.h"

namespace keel::kernels {
namespace {

constexpr int kWarpsPerBlock = 4;        // rows per block of the row kernels
constexpr int kColumnTile = 32;          // columns per block of the column kernel
constexpr int kRowThreads = 8;           // row-threads per block of the column kernel
constexpr int64_t kRowsPerChunk = 256;   // rows each column-kernel block sums, at least
constexpr int64_t kMaxChunks = 65535;    // gridDim.y limit

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__global__ void residual_norm_forward_kernel(const float* residual, const __nv_bfloat16* delta, const float* weight,
                                             const float* bias, int n, int c, float eps, bool rms, float* h_out,
                                             __nv_bfloat16* y, float* mean_out, float* rstd_out) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= n) return;
  const int64_t base = row * c;
  // h: the new residual; read back from h_out (written by this same thread) or, without a delta,
  // straight from the residual.
  const float* h = delta ? h_out + base : residual + base;
  float sum = 0.f;
  for (int j = lane; j < c; j += 32) {
    float v = residual[base + j];
    if (delta) {
      v += __bfloat162float(delta[base + j]);
      h_out[base + j] = v;
    }
    sum += v;
  }
  const float mean = rms ? 0.f : warp_sum(sum) / c;
  float squares = 0.f;
  for (int j = lane; j < c; j += 32) {
    const float centred = h[j] - mean;
    squares += centred * centred;
  }
  const float rstd = rsqrtf(warp_sum(squares) / c + eps);
  const bool with_bias = bias && !rms;
  for (int j = lane; j < c; j += 32) {
    const float out = (h[j] - mean) * rstd * weight[j] + (with_bias ? bias[j] : 0.f);
    y[base + j] = __float2bfloat16_rn(out);
  }
  if (lane == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

__global__ void residual_norm_backward_rows_kernel(const __nv_bfloat16* grad_y, const float* grad_residual_out,
                                                   const float* h, const float* mean, const float* rstd,
                                                   const float* weight, int n, int c, bool rms, float* grad_input,
                                                   __nv_bfloat16* grad_delta) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= n) return;
  const int64_t base = row * c;
  const float m = mean[row], r = rstd[row];
  float sum_g = 0.f, sum_g_xhat = 0.f;
  for (int j = lane; j < c; j += 32) {
    const float g = __bfloat162float(grad_y[base + j]) * weight[j];
    sum_g += g;
    sum_g_xhat += g * ((h[base + j] - m) * r);
  }
  const float mean_g = rms ? 0.f : warp_sum(sum_g) / c;
  const float mean_g_xhat = warp_sum(sum_g_xhat) / c;
  for (int j = lane; j < c; j += 32) {
    const float g = __bfloat162float(grad_y[base + j]) * weight[j];
    const float xhat = (h[base + j] - m) * r;
    float dx = r * (g - mean_g - xhat * mean_g_xhat);
    if (grad_residual_out) dx += grad_residual_out[base + j];
    grad_input[base + j] = dx;
    if (grad_delta) grad_delta[base + j] = __float2bfloat16_rn(dx);
  }
}

// partial: (2, chunks, c): [0] sums of grad_y * xhat, [1] sums of grad_y, over each chunk's rows.
__global__ void residual_norm_backward_columns_kernel(const __nv_bfloat16* grad_y, const float* h, const float* mean,
                                                      const float* rstd, int n, int c, int rows_per_chunk,
                                                      float* partial) {
  __shared__ float weight_sums[kRowThreads][kColumnTile + 1];
  __shared__ float bias_sums[kRowThreads][kColumnTile + 1];
  const int col = blockIdx.x * kColumnTile + threadIdx.x;
  const int64_t row_begin = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t row_end = row_begin + rows_per_chunk < n ? row_begin + rows_per_chunk : n;
  float dw = 0.f, db = 0.f;
  if (col < c) {
    for (int64_t i = row_begin + threadIdx.y; i < row_end; i += kRowThreads) {
      const float dy = __bfloat162float(grad_y[i * c + col]);
      dw += dy * ((h[i * c + col] - mean[i]) * rstd[i]);
      db += dy;
    }
  }
  weight_sums[threadIdx.y][threadIdx.x] = dw;
  bias_sums[threadIdx.y][threadIdx.x] = db;
  __syncthreads();
  if (threadIdx.y == 0 && col < c) {
    float w = 0.f, b = 0.f;
#pragma unroll
    for (int k = 0; k < kRowThreads; ++k) {
      w += weight_sums[k][threadIdx.x];
      b += bias_sums[k][threadIdx.x];
    }
    const int64_t chunks = gridDim.y;
    partial[static_cast<int64_t>(blockIdx.y) * c + col] = w;
    partial[(chunks + blockIdx.y) * c + col] = b;
  }
}

__global__ void residual_norm_sum_chunks_kernel(const float* partial, int chunks, int c, float* grad_weight,
                                                float* grad_bias) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= c) return;
  float w = 0.f, b = 0.f;
  for (int k = 0; k < chunks; ++k) {
    w += partial[static_cast<int64_t>(k) * c + col];
    b += partial[static_cast<int64_t>(chunks + k) * c + col];
  }
  if (grad_weight) grad_weight[col] = w;
  if (grad_bias) grad_bias[col] = b;
}

int64_t rows_per_chunk_for(int64_t n) {
  const int64_t needed = (n + kMaxChunks - 1) / kMaxChunks;
  return needed > kRowsPerChunk ? needed : kRowsPerChunk;
}

void check_shape(const char* what, int64_t n, int64_t c) {
  KEEL_CHECK(n >= 0 && n <= INT_MAX, what << ": row count " << n << " must be in [0, " << INT_MAX << "]");
  KEEL_CHECK(c >= 1 && c <= INT_MAX / 2, what << ": width " << c << " must be in [1, " << INT_MAX / 2 << "]");
  KEEL_CHECK(n * c / c == n && n * c <= (int64_t{1} << 40), what << ": " << n << " x " << c << " elements is too many");
}

unsigned row_blocks(int64_t n) { return static_cast<unsigned>((n + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

int64_t residual_norm_partial_floats(int64_t n, int64_t c) {
  const int64_t chunks = n == 0 ? 0 : (n + rows_per_chunk_for(n) - 1) / rows_per_chunk_for(n);
  return 2 * chunks * c;
}

void residual_norm_forward(const float* residual, const __nv_bfloat16* delta, const float* weight, const float* bias,
                           int64_t n, int64_t c, float eps, bool rms, float* h_out, __nv_bfloat16* y, float* mean,
                           float* rstd, cudaStream_t stream) {
  check_shape("residual_norm_forward", n, c);
  KEEL_CHECK(eps > 0.f, "residual_norm_forward: eps " << eps << " must be > 0");
  if (n == 0) return;
  KEEL_CHECK(residual && weight && y && mean && rstd, "residual_norm_forward: null device pointer");
  KEEL_CHECK(!delta || h_out, "residual_norm_forward: a delta needs h_out for the new residual");
  KEEL_CHECK(rms || bias, "residual_norm_forward: LayerNorm needs a bias pointer");
  residual_norm_forward_kernel<<<row_blocks(n), kWarpsPerBlock * 32, 0, stream>>>(
      residual, delta, weight, bias, static_cast<int>(n), static_cast<int>(c), eps, rms, h_out, y, mean, rstd);
  CUDA_CHECK(cudaGetLastError());
}

void residual_norm_backward(const __nv_bfloat16* grad_y, const float* grad_residual_out, const float* h,
                            const float* mean, const float* rstd, const float* weight, int64_t n, int64_t c, bool rms,
                            float* grad_input, __nv_bfloat16* grad_delta, float* grad_weight, float* grad_bias,
                            float* partial, cudaStream_t stream) {
  check_shape("residual_norm_backward", n, c);
  KEEL_CHECK(grad_y && h && mean && rstd && weight && grad_input && grad_weight,
             "residual_norm_backward: null device pointer");
  KEEL_CHECK(n == 0 || partial, "residual_norm_backward: null scratch pointer");
  const int64_t rows_per_chunk = rows_per_chunk_for(n);
  const int64_t chunks = (n + rows_per_chunk - 1) / rows_per_chunk;
  if (n == 0) {
    CUDA_CHECK(cudaMemsetAsync(grad_weight, 0, sizeof(float) * c, stream));
    if (grad_bias && !rms) CUDA_CHECK(cudaMemsetAsync(grad_bias, 0, sizeof(float) * c, stream));
    return;
  }
  residual_norm_backward_rows_kernel<<<row_blocks(n), kWarpsPerBlock * 32, 0, stream>>>(
      grad_y, grad_residual_out, h, mean, rstd, weight, static_cast<int>(n), static_cast<int>(c), rms, grad_input,
      grad_delta);
  CUDA_CHECK(cudaGetLastError());
  const dim3 column_grid(static_cast<unsigned>((c + kColumnTile - 1) / kColumnTile), static_cast<unsigned>(chunks));
  residual_norm_backward_columns_kernel<<<column_grid, dim3(kColumnTile, kRowThreads), 0, stream>>>(
      grad_y, h, mean, rstd, static_cast<int>(n), static_cast<int>(c), static_cast<int>(rows_per_chunk), partial);
  CUDA_CHECK(cudaGetLastError());
  residual_norm_sum_chunks_kernel<<<static_cast<unsigned>((c + 255) / 256), 256, 0, stream>>>(
      partial, static_cast<int>(chunks), static_cast<int>(c), grad_weight, rms ? nullptr : grad_bias);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace keel::kernels
