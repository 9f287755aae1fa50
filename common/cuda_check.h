// CUDA_CHECK: turns a failing CUDA runtime call into keel::KeelError carrying the call, CUDA's error
// name and string, and the file and line (through keel::throw_error). Here, in the lowest CUDA
// layer, so the kernels of kernels/ (compiled by nvcc and by the host compiler) can use it without
// NCCL; parallel/nccl_check.h adds NCCL_CHECK on top of it.
#pragma once

#include <cuda_runtime_api.h>

#include <sstream>

#include "common/check.h"

#define CUDA_CHECK(call)                                                                   \
  do {                                                                                     \
    const cudaError_t keel_cuda_rc_ = (call);                                              \
    if (keel_cuda_rc_ != cudaSuccess) {                                                    \
      std::ostringstream keel_cuda_s_;                                                     \
      keel_cuda_s_ << "CUDA call " #call " failed: " << cudaGetErrorName(keel_cuda_rc_)    \
                   << ": " << cudaGetErrorString(keel_cuda_rc_);                           \
      ::keel::throw_error(__FILE__, __LINE__, keel_cuda_s_.str());                         \
    }                                                                                      \
  } while (0)
