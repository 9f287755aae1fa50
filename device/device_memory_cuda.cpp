// CUDA builds: peak bytes allocated through LibTorch's caching allocator (see device_memory.h).
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>

#include <string>

#include "device/device_memory.h"

namespace keel {

int64_t cuda_peak_allocated_bytes(int device_index) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device_index));
  return stats.allocated_bytes[0].peak;  // index 0: StatType::AGGREGATE
}

void cuda_reset_peak_memory(int device_index) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device_index));
}

int64_t cuda_total_memory_bytes(int device_index) {
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, device_index) != cudaSuccess) return 0;
  return static_cast<int64_t>(properties.totalGlobalMem);
}

double cuda_peak_bf16_flops(int device_index) {
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, device_index) != cudaSuccess) return 0;
  const std::string name = properties.name;
  if (name.find("H100") != std::string::npos || name.find("H200") != std::string::npos) return 989e12;
  if (name.find("A100") != std::string::npos) return 312e12;
  return 0;
}

int cuda_device_count() { return static_cast<int>(c10::cuda::device_count()); }

}  // namespace keel
