// bfloat16 / float16 <-> float32 conversions on raw bits, Torch-free, for the MPI backend (which
// reduces 16-bit floats in float32). Rounding to 16 bits is round-to-nearest-even; NaN stays NaN.
#pragma once

#include <cstddef>

#include "parallel/communicator.h"

namespace keel::parallel {

// `type` must be kBFloat16 or kFloat16.
void half_to_float(const void* src, float* dst, size_t count, DataType type);
void float_to_half(const float* src, void* dst, size_t count, DataType type);

}  // namespace keel::parallel
