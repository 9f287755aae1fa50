// Fused bf16 cross-entropy kernels (see cross_entropy.h for the contract and why).
//
// One block per row. Each row is split into a scalar head (elements before the first 16-byte
// boundary), a body of 16-byte vectors (8 bf16 each, loaded four at a time per thread so several
// loads are in flight) and a scalar tail, so any V, row stride and base pointer work and the body
// is vectorised whenever the row is long enough. All arithmetic is fp32.
//   forward:  one read pass; each thread keeps an online (max m, sum s of exp(x - m)) pair, the
//             pairs are merged by warp shuffles and then across warps through shared memory.
//   backward: one read + one write pass; the gradient of each element depends only on that
//             element, the row's (max, log_sum) and target, so writing over the logits in place is
//             safe.
#include "kernels/cross_entropy.h"

#include <cuda_bf16.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "common/cuda_check.h"

namespace keel::kernels {
namespace {

constexpr int kMaxThreads = 512;  // per block (one row); a multiple of 32
constexpr int kVec = 8;           // bf16 per 16-byte vector
constexpr int kUnroll = 4;        // vectors loaded per thread before the first is used

// Threads for a row of v elements: about two vectors per thread for short rows, at most kMaxThreads.
int threads_for(int64_t v) {
  int64_t want = (v + 2 * kVec - 1) / (2 * kVec);
  want = (want + 31) / 32 * 32;
  if (want < 32) want = 32;
  if (want > kMaxThreads) want = kMaxThreads;
  return static_cast<int>(want);
}

// Elements of a row before its first 16-byte boundary (bf16 pointers are always 2-byte aligned).
__device__ __forceinline__ int64_t head_elements(const void* row, int64_t v) {
  const int64_t head = static_cast<int64_t>(((16u - (reinterpret_cast<uintptr_t>(row) & 15u)) & 15u) / 2u);
  return head < v ? head : v;
}

// The two bf16 of a 32-bit word as fp32 (low half first, as they lie in memory).
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ void unpack8(const uint4& q, float (&x)[kVec]) {
  x[0] = bf16_lo(q.x), x[1] = bf16_hi(q.x), x[2] = bf16_lo(q.y), x[3] = bf16_hi(q.y);
  x[4] = bf16_lo(q.z), x[5] = bf16_hi(q.z), x[6] = bf16_lo(q.w), x[7] = bf16_hi(q.w);
}

__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Online log-sum-exp state (m, s): the values seen so far have sum(exp(x)) = s * exp(m).
// While everything seen is -inf, m stays -inf and s 0 (the guard keeps -inf - -inf = NaN out).
__device__ __forceinline__ void lse_add1(float& m, float& s, float x) {
  const float nm = fmaxf(m, x);
  if (nm == -INFINITY) return;
  s = s * __expf(m - nm) + __expf(x - nm);
  m = nm;
}

__device__ __forceinline__ void lse_add8(float& m, float& s, const uint4& q) {
  float x[kVec];
  unpack8(q, x);
  float vmax = x[0];
#pragma unroll
  for (int k = 1; k < kVec; ++k) vmax = fmaxf(vmax, x[k]);
  const float nm = fmaxf(m, vmax);
  if (nm == -INFINITY) return;
  float acc = s * __expf(m - nm);
#pragma unroll
  for (int k = 0; k < kVec; ++k) acc += __expf(x[k] - nm);
  s = acc;
  m = nm;
}

__device__ __forceinline__ void lse_merge(float& m, float& s, float om, float os) {
  const float nm = fmaxf(m, om);
  if (nm == -INFINITY) return;
  s = s * __expf(m - nm) + os * __expf(om - nm);
  m = nm;
}

// (m, s) of the whole block, valid in thread 0. blockDim.x is a multiple of 32.
__device__ __forceinline__ void block_lse_reduce(float& m, float& s) {
  __shared__ float warp_m[32], warp_s[32];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, offset), __shfl_xor_sync(0xffffffffu, s, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_m[warp] = m, warp_s[warp] = s;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / 32;
    m = lane < warps ? warp_m[lane] : -INFINITY;
    s = lane < warps ? warp_s[lane] : 0.0f;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, offset), __shfl_xor_sync(0xffffffffu, s, offset));
  }
}

// grid (N), block threads_for(V). Writes loss[row], row_max[row], log_sum[row].
__global__ void __launch_bounds__(kMaxThreads)
    cross_entropy_forward_kernel(const __nv_bfloat16* __restrict__ logits, int64_t row_stride,
                                 const int64_t* __restrict__ targets, int64_t v, int64_t ignore_index,
                                 float* __restrict__ loss, float* __restrict__ row_max,
                                 float* __restrict__ log_sum) {
  const int64_t row = blockIdx.x;
  const __nv_bfloat16* x = logits + row * row_stride;
  const int64_t head = head_elements(x, v);
  const int64_t nvec = (v - head) / kVec;
  const int64_t tail = head + nvec * kVec;
  const int64_t step = blockDim.x;

  float m = -INFINITY, s = 0.0f;
  for (int64_t j = threadIdx.x; j < head; j += step) lse_add1(m, s, __bfloat162float(x[j]));
  const uint4* xv = reinterpret_cast<const uint4*>(x + head);
  int64_t k = threadIdx.x;
  for (; k + (kUnroll - 1) * step < nvec; k += kUnroll * step) {
    uint4 q[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) q[u] = __ldg(xv + k + u * step);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) lse_add8(m, s, q[u]);
  }
  for (; k < nvec; k += step) lse_add8(m, s, __ldg(xv + k));
  for (int64_t j = tail + threadIdx.x; j < v; j += step) lse_add1(m, s, __bfloat162float(x[j]));

  block_lse_reduce(m, s);
  if (threadIdx.x == 0) {
    float row_m = m, row_ls = logf(s), row_loss;
    const int64_t t = targets[row];
    if (t == ignore_index) {
      row_loss = 0.0f;
    } else if (t >= 0 && t < v) {
      row_loss = (row_m - __bfloat162float(x[t])) + row_ls;
    } else {  // out of range: never read through; NaN marks the row (and the mean)
      row_loss = row_m = row_ls = __int_as_float(0x7fc00000);
    }
    loss[row] = row_loss;
    row_max[row] = row_m;
    log_sum[row] = row_ls;
  }
}

// grid (N), block threads_for(V). grad may alias logits exactly (same pointer and stride): no
// __restrict__ and no read-only-cache loads here.
__global__ void __launch_bounds__(kMaxThreads)
    cross_entropy_backward_kernel(const __nv_bfloat16* logits, int64_t row_stride, const int64_t* targets,
                                  const float* row_max, const float* log_sum, const float* scale,
                                  const float* z_scale, int64_t v, int64_t ignore_index,
                                  __nv_bfloat16* grad, int64_t grad_row_stride) {
  const int64_t row = blockIdx.x;
  const __nv_bfloat16* x = logits + row * row_stride;
  __nv_bfloat16* g = grad + row * grad_row_stride;
  const int64_t t = targets[row];
  const int64_t step = blockDim.x;

  if (t == ignore_index) {  // no loss, no gradient: zeros, without reading the row
    for (int64_t j = threadIdx.x; j < v; j += step) g[j] = __float2bfloat16_rn(0.0f);
    return;
  }
  const float m = row_max[row], ls = log_sum[row];  // NaN for an out-of-range target: a NaN row
  const float sc = *scale;
  // z-loss: d(lse^2)/dx_j = 2 lse p_j, folded into p_j's factor (z_scale = 2 g_z / count).
  const float p_factor = z_scale ? sc + *z_scale * (m + ls) : sc;
  auto grad_of = [&](float xj, int64_t j) { return __expf((xj - m) - ls) * p_factor - (j == t ? sc : 0.0f); };

  // The vector body needs x and g at the same offset from a 16-byte boundary (always so in place).
  const bool same_phase = (reinterpret_cast<uintptr_t>(x) & 15u) == (reinterpret_cast<uintptr_t>(g) & 15u);
  const int64_t head = same_phase ? head_elements(x, v) : v;
  const int64_t nvec = (v - head) / kVec;
  const int64_t tail = head + nvec * kVec;

  for (int64_t j = threadIdx.x; j < head; j += step) g[j] = __float2bfloat16_rn(grad_of(__bfloat162float(x[j]), j));
  const uint4* xv = reinterpret_cast<const uint4*>(x + head);
  uint4* gv = reinterpret_cast<uint4*>(g + head);
  auto grad8 = [&](const uint4& q, int64_t k) {
    float xs[kVec];
    unpack8(q, xs);
    const int64_t j0 = head + k * kVec;
    float d[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) d[e] = grad_of(xs[e], j0 + e);
    gv[k] = make_uint4(pack2(d[0], d[1]), pack2(d[2], d[3]), pack2(d[4], d[5]), pack2(d[6], d[7]));
  };
  int64_t k = threadIdx.x;
  for (; k + (kUnroll - 1) * step < nvec; k += kUnroll * step) {
    uint4 q[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) q[u] = xv[k + u * step];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) grad8(q[u], k + u * step);
  }
  for (; k < nvec; k += step) grad8(xv[k], k);
  for (int64_t j = tail + threadIdx.x; j < v; j += step) g[j] = __float2bfloat16_rn(grad_of(__bfloat162float(x[j]), j));
}

void check_shape(int64_t n, int64_t v, int64_t row_stride, const char* what) {
  KEEL_CHECK(n >= 0 && n <= INT_MAX, what << ": row count " << n << " must be in [0, " << INT_MAX << "]");
  KEEL_CHECK(v >= 1, what << ": vocabulary size " << v << " must be >= 1");
  KEEL_CHECK(row_stride >= v, what << ": row stride " << row_stride << " must be >= the vocabulary size " << v);
}

}  // namespace

void cross_entropy_forward(const __nv_bfloat16* logits, int64_t row_stride, const int64_t* targets, int64_t n,
                           int64_t v, int64_t ignore_index, float* loss, float* row_max, float* log_sum,
                           cudaStream_t stream) {
  check_shape(n, v, row_stride, "cross_entropy_forward");
  if (n == 0) return;
  KEEL_CHECK(logits && targets && loss && row_max && log_sum, "cross_entropy_forward: null device pointer");
  cross_entropy_forward_kernel<<<static_cast<unsigned>(n), threads_for(v), 0, stream>>>(
      logits, row_stride, targets, v, ignore_index, loss, row_max, log_sum);
  CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_backward(const __nv_bfloat16* logits, int64_t row_stride, const int64_t* targets,
                            const float* row_max, const float* log_sum, const float* scale, const float* z_scale,
                            int64_t n, int64_t v, int64_t ignore_index, __nv_bfloat16* grad_logits,
                            int64_t grad_row_stride, cudaStream_t stream) {
  check_shape(n, v, row_stride, "cross_entropy_backward");
  KEEL_CHECK(grad_row_stride >= v,
             "cross_entropy_backward: gradient row stride " << grad_row_stride << " must be >= " << v);
  KEEL_CHECK(reinterpret_cast<const void*>(grad_logits) != reinterpret_cast<const void*>(logits) ||
                 grad_row_stride == row_stride,
             "cross_entropy_backward: an in-place gradient needs the logits' row stride");
  if (n == 0) return;
  KEEL_CHECK(logits && targets && row_max && log_sum && scale && grad_logits,
             "cross_entropy_backward: null device pointer");
  cross_entropy_backward_kernel<<<static_cast<unsigned>(n), threads_for(v), 0, stream>>>(
      logits, row_stride, targets, row_max, log_sum, scale, z_scale, v, ignore_index, grad_logits, grad_row_stride);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace keel::kernels
