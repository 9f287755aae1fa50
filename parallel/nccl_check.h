// CUDA_CHECK / NCCL_CHECK: turn a failing CUDA runtime or NCCL call into keel::KeelError carrying
// the call, the library's error string, and the file and line (through keel::throw_error).
// CUDA_CHECK comes from common/cuda_check.h (the layer below, whose kernels need it without NCCL).
// Only for the CUDA build (keel_parallel_nccl and its users).
#pragma once

#include <nccl.h>

#include <sstream>

#include "common/check.h"
#include "common/cuda_check.h"

#define NCCL_CHECK(call)                                                                   \
  do {                                                                                     \
    const ncclResult_t keel_nccl_rc_ = (call);                                             \
    if (keel_nccl_rc_ != ncclSuccess && keel_nccl_rc_ != ncclInProgress) {                 \
      std::ostringstream keel_nccl_s_;                                                     \
      keel_nccl_s_ << "NCCL call " #call " failed: " << ncclGetErrorString(keel_nccl_rc_); \
      ::keel::throw_error(__FILE__, __LINE__, keel_nccl_s_.str());                         \
    }                                                                                      \
  } while (0)
