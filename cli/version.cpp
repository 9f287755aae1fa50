// `keel --version` (see version.h). The facts come from keel_build_info.h, which the build writes
// (cli/write_build_info.cmake).
#include "cli/version.h"

#include "keel_build_info.h"

namespace keel::cli {
namespace {
const char* built_or_not(bool built) { return built ? "built" : "not built"; }
}  // namespace

std::string version_text() {
  return std::string("keel ") + KEEL_BUILD_VERSION + "\n" +
         "git commit: " + KEEL_BUILD_COMMIT + "\n" +
         "LibTorch: " + KEEL_BUILD_TORCH_VERSION + " (CUDA " + built_or_not(KEEL_BUILD_TORCH_CUDA) + ")\n" +
         "CUDA kernels and NCCL backend: " + built_or_not(KEEL_BUILD_WITH_CUDA) + "\n";
}

}  // namespace keel::cli
