// Peak device memory of the current process (CUDA caching allocator), for metrics and benchmarks.
// Returns 0 on CPU-only builds: the CUDA query lives in device_memory_cuda.cpp, compiled only
// where LibTorch has CUDA.
#pragma once

#include <cstdint>

namespace keel {

int64_t cuda_peak_allocated_bytes(int device_index);
// Dense bf16 peak FLOP/s of CUDA device `device_index` when its model is known (H100/H200: 989e12,
// A100: 312e12), else 0. For MFU.
double cuda_peak_bf16_flops(int device_index);
// CUDA devices LibTorch can use (0 on CPU-only builds).
int cuda_device_count();
void cuda_reset_peak_memory(int device_index);

}  // namespace keel
