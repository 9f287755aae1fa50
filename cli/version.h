// `keel --version`: what was built (version, git commit, LibTorch version, CUDA kernels and NCCL
// built or not), for bug reports and for telling two builds apart.
#pragma once

#include <string>

namespace keel::cli {

std::string version_text();

}  // namespace keel::cli
