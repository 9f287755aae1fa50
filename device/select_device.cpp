// Device selection (see select_device.h).
#include "device/select_device.h"

#include "common/check.h"

namespace keel {

torch::Device select_device(const std::string& setting, int index) {
  KEEL_CHECK(setting == "auto" || setting == "cpu" || setting == "cuda",
             "device must be auto, cpu or cuda, got '" << setting << "'");
  if (setting == "cpu" || (setting == "auto" && !torch::cuda::is_available())) return torch::Device(torch::kCPU);
  KEEL_CHECK(torch::cuda::is_available(), "device cuda was asked for but no CUDA device is available");
  KEEL_CHECK(index >= 0 && index < static_cast<int>(torch::cuda::device_count()),
             "this process's local rank " << index << " has no GPU (" << torch::cuda::device_count()
                                          << " visible): start at most one worker per GPU on a node");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace keel
