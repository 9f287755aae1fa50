// LibTorch tensors <-> the Torch-free safetensors views of checkpoint/safetensors.h: the dtype
// mapping, host copies kept alive while a file is written, and a file's tensor viewed as a Torch
// tensor (no copy). Shared by the files of checkpoint_torch/ that write or read safetensors.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "common/check.h"

namespace keel {

inline checkpoint::DType dtype_of(torch::ScalarType type) {
  using checkpoint::DType;
  switch (type) {
    case torch::kFloat: return DType::F32;
    case torch::kDouble: return DType::F64;
    case torch::kHalf: return DType::F16;
    case torch::kBFloat16: return DType::BF16;
    case torch::kLong: return DType::I64;
    case torch::kInt: return DType::I32;
    case torch::kShort: return DType::I16;
    case torch::kChar: return DType::I8;
    case torch::kByte: return DType::U8;
    case torch::kBool: return DType::BOOL;
    default: KEEL_CHECK(false, "unsupported tensor dtype " << type);
  }
}

inline checkpoint::DType dtype_of(const torch::Tensor& t) { return dtype_of(t.scalar_type()); }

// Host copies of tensors (kept alive while the file is written) and their views.
struct TensorBundle {
  std::vector<torch::Tensor> host;
  std::vector<checkpoint::TensorView> views;
  void add(const std::string& name, const torch::Tensor& tensor) {
    host.push_back(tensor.detach().to(torch::kCPU).contiguous());
    const auto& t = host.back();
    views.push_back(checkpoint::TensorView{name, dtype_of(t), t.sizes().vec(), t.data_ptr(), t.nbytes()});
  }
};

// Tensor `name` of `file` as a CPU tensor over the file's bytes (valid while `file` lives); its
// dtype must be `type`. Throws naming the file and tensor.
inline torch::Tensor tensor_in(const checkpoint::SafetensorsFile& file, const std::string& name,
                               torch::ScalarType type) {
  KEEL_CHECK(file.has(name), file.path() << ": tensor '" << name << "' is missing");
  const checkpoint::TensorView view = file.view(name);
  KEEL_CHECK(view.dtype == dtype_of(type), file.path() << ": tensor '" << name << "' has dtype "
                                                       << dtype_name(view.dtype) << " but "
                                                       << dtype_name(dtype_of(type)) << " is expected");
  return torch::from_blob(const_cast<void*>(view.data), view.shape, type);
}

}  // namespace keel
