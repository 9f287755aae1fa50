// The raw cross-entropy kernels' host-side checks (kernels/cross_entropy.h): bad shapes and strides
// throw before anything is launched, and N = 0 launches nothing. Needs no GPU, so it runs in every
// build that compiles the kernels (CI included), which also proves the kernel library links.
#include <gtest/gtest.h>

#include <cstdint>

#include "kernels/cross_entropy.h"

namespace keel::kernels {
namespace {

// Never dereferenced on the host: the checks reject the call before any launch.
const auto* kLogits = reinterpret_cast<const __nv_bfloat16*>(uintptr_t{0x1000});
const auto* kTargets = reinterpret_cast<const int64_t*>(uintptr_t{0x2000});
auto* kOut = reinterpret_cast<float*>(uintptr_t{0x3000});

TEST(CrossEntropyKernelArgs, BadShapesThrowBeforeLaunch) {
  EXPECT_THROW(cross_entropy_forward(kLogits, 10, kTargets, -1, 10, -100, kOut, kOut, kOut, nullptr), std::exception);
  EXPECT_THROW(cross_entropy_forward(kLogits, 10, kTargets, 4, 0, -100, kOut, kOut, kOut, nullptr), std::exception);
  EXPECT_THROW(cross_entropy_forward(kLogits, 9, kTargets, 4, 10, -100, kOut, kOut, kOut, nullptr), std::exception);
  EXPECT_THROW(cross_entropy_forward(kLogits, 10, kTargets, int64_t{1} << 32, 10, -100, kOut, kOut, kOut, nullptr),
               std::exception);
  EXPECT_THROW(cross_entropy_forward(nullptr, 10, kTargets, 4, 10, -100, kOut, kOut, kOut, nullptr), std::exception);
  auto* grad = reinterpret_cast<__nv_bfloat16*>(uintptr_t{0x4000});
  EXPECT_THROW(cross_entropy_backward(kLogits, 10, kTargets, kOut, kOut, kOut, nullptr, 4, 10, -100, grad, 9, nullptr),
               std::exception);
  // In place (grad == logits) needs the same row stride.
  EXPECT_THROW(cross_entropy_backward(kLogits, 10, kTargets, kOut, kOut, kOut, nullptr, 4, 10, -100,
                                      const_cast<__nv_bfloat16*>(kLogits), 12, nullptr),
               std::exception);
}

TEST(CrossEntropyKernelArgs, NoRowsLaunchesNothing) {
  EXPECT_NO_THROW(cross_entropy_forward(nullptr, 10, nullptr, 0, 10, -100, nullptr, nullptr, nullptr, nullptr));
  EXPECT_NO_THROW(cross_entropy_backward(nullptr, 10, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 10, -100,
                                         nullptr, 10, nullptr));
}

}  // namespace
}  // namespace keel::kernels
