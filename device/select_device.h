// Which torch::Device a program runs on, decided in one place for `keel train` workers,
// `keel generate` and `keel diagnose`: "auto" takes the GPU when LibTorch sees one, "cuda" insists
// on it (a clear error without one), "cpu" never touches CUDA. A worker passes its node-local rank
// as the index; which GPU that is follows gpu_binding.h (the only one visible under a one-GPU-per-
// task binding).
#pragma once

#include <torch/torch.h>

#include <string>

namespace keel {

// Throws KeelError naming the setting for "cuda" without a GPU, an index beyond the visible GPUs,
// or a setting other than auto | cpu | cuda.
torch::Device select_device(const std::string& setting, int index = 0);

}  // namespace keel
