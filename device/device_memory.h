// Peak device memory of the current process (CUDA caching allocator), for metrics and benchmarks.
// Returns 0 on CPU-only builds: the CUDA query lives in device_memory_cuda.cpp, compiled only
// where LibTorch has CUDA.
#pragma once

#include <cstdint>
#include <string>

namespace keel {

int64_t cuda_peak_allocated_bytes(int device_index);
// Dense bf16 peak FLOP/s of CUDA device `device_index` when its model is known (H100/H200: 989e12,
// A100: 312e12), else 0. For MFU.
double cuda_peak_bf16_flops(int device_index);
// CUDA devices LibTorch can use (0 on CPU-only builds).
int cuda_device_count();

// Whether a run with `train.device` = `device_setting` (auto | cpu | cuda) trains on a GPU here.
inline bool trains_on_cuda(const std::string& device_setting) {
  return device_setting == "cuda" || (device_setting == "auto" && cuda_device_count() > 0);
}
void cuda_reset_peak_memory(int device_index);
// Total memory of CUDA device `device_index` in bytes (0 on CPU-only builds or when unknown).
int64_t cuda_total_memory_bytes(int device_index);
// This host's physical memory in bytes (0 when unknown).
int64_t host_memory_bytes();

}  // namespace keel
