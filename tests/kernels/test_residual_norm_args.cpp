// The raw residual-norm kernels' host-side checks (kernels/residual_norm.h): bad shapes, missing
// pointers and eps throw before anything is launched, and N = 0 launches nothing. Needs no GPU, so
// it runs in every build that compiles the kernels (CI included).
#include <gtest/gtest.h>

#include <cstdint>

#include "kernels/residual_norm.h"

namespace keel::kernels {
namespace {

// Never dereferenced on the host: the checks reject the call before any launch.
const auto* kIn = reinterpret_cast<const float*>(uintptr_t{0x1000});
const auto* kDelta = reinterpret_cast<const __nv_bfloat16*>(uintptr_t{0x2000});
auto* kOut = reinterpret_cast<float*>(uintptr_t{0x3000});
auto* kOutBf16 = reinterpret_cast<__nv_bfloat16*>(uintptr_t{0x4000});

TEST(ResidualNormKernelArgs, BadShapesAndPointersThrowBeforeLaunch) {
  // Negative rows, zero width, too many rows.
  EXPECT_THROW(residual_norm_forward(kIn, kDelta, kIn, kIn, -1, 8, 1e-5f, false, kOut, kOutBf16, kOut, kOut, nullptr),
               std::exception);
  EXPECT_THROW(residual_norm_forward(kIn, kDelta, kIn, kIn, 4, 0, 1e-5f, false, kOut, kOutBf16, kOut, kOut, nullptr),
               std::exception);
  EXPECT_THROW(residual_norm_forward(kIn, kDelta, kIn, kIn, int64_t{1} << 32, 8, 1e-5f, false, kOut, kOutBf16, kOut,
                                     kOut, nullptr),
               std::exception);
  // eps must be positive; a delta needs somewhere to write h; LayerNorm needs its bias.
  EXPECT_THROW(residual_norm_forward(kIn, kDelta, kIn, kIn, 4, 8, 0.f, false, kOut, kOutBf16, kOut, kOut, nullptr),
               std::exception);
  EXPECT_THROW(residual_norm_forward(kIn, kDelta, kIn, kIn, 4, 8, 1e-5f, false, nullptr, kOutBf16, kOut, kOut, nullptr),
               std::exception);
  EXPECT_THROW(residual_norm_forward(kIn, kDelta, kIn, nullptr, 4, 8, 1e-5f, false, kOut, kOutBf16, kOut, kOut, nullptr),
               std::exception);
  EXPECT_THROW(residual_norm_forward(nullptr, kDelta, kIn, kIn, 4, 8, 1e-5f, false, kOut, kOutBf16, kOut, kOut, nullptr),
               std::exception);
  // Backward: missing pointers and scratch.
  EXPECT_THROW(residual_norm_backward(nullptr, nullptr, kIn, kIn, kIn, kIn, 4, 8, false, kOut, kOutBf16, kOut, kOut,
                                      kOut, nullptr),
               std::exception);
  EXPECT_THROW(residual_norm_backward(kDelta, nullptr, kIn, kIn, kIn, kIn, 4, 8, false, kOut, kOutBf16, kOut, kOut,
                                      nullptr, nullptr),
               std::exception);
  EXPECT_THROW(residual_norm_backward(kDelta, nullptr, kIn, kIn, kIn, kIn, 4, -8, false, kOut, kOutBf16, kOut, kOut,
                                      kOut, nullptr),
               std::exception);
}

TEST(ResidualNormKernelArgs, NoRowsLaunchesNothingAndScratchIsSized) {
  EXPECT_NO_THROW(residual_norm_forward(nullptr, nullptr, nullptr, nullptr, 0, 8, 1e-5f, false, nullptr, nullptr,
                                        nullptr, nullptr, nullptr));
  EXPECT_EQ(residual_norm_partial_floats(0, 768), 0);
  EXPECT_EQ(residual_norm_partial_floats(1, 768), 2 * 768);
  EXPECT_EQ(residual_norm_partial_floats(256, 768), 2 * 768);
  EXPECT_EQ(residual_norm_partial_floats(257, 768), 4 * 768);
  EXPECT_EQ(residual_norm_partial_floats(32768, 768), 2 * 128 * 768);
  // Past 65535 chunks of 256 rows the chunks grow instead of the grid.
  EXPECT_LE(residual_norm_partial_floats(int64_t{65536} * 256 * 2, 4), 2 * 65535 * 4);
}

}  // namespace
}  // namespace keel::kernels
