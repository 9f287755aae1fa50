// Device selection (see select_device.h).
#include "device/select_device.h"

#include "common/check.h"
#include "device/gpu_binding.h"

namespace keel {

torch::Device select_device(const std::string& setting, int index) {
  KEEL_CHECK(setting == "auto" || setting == "cpu" || setting == "cuda",
             "device must be auto, cpu or cuda, got '" << setting << "'");
  if (setting == "cpu" || (setting == "auto" && !torch::cuda::is_available())) return torch::Device(torch::kCPU);
  KEEL_CHECK(torch::cuda::is_available(), "device cuda was asked for but no CUDA device is available");
  const int gpu = gpu_for_local_rank(index, static_cast<int>(torch::cuda::device_count()));
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(gpu));
}

}  // namespace keel
