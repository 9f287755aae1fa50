// CUDA builds: PhaseClock's device clock (see phase_clock.h). Each step's marks are CUDA events on
// the current stream; a ring of kSlots steps keeps the events of steps still in flight, and take()
// reads the newest finished step with cudaEventQuery (never waits) and cudaEventElapsedTime.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "common/cuda_check.h"
#include "device/phase_clock.h"

namespace keel {
namespace {

constexpr size_t kSlots = 4;

class CudaPhaseEvents final : public PhaseDeviceEvents {
 public:
  explicit CudaPhaseEvents(int device) : device_(static_cast<c10::DeviceIndex>(device)) {}

  ~CudaPhaseEvents() override {
    for (auto& slot : slots_) {
      for (auto& mark : slot.marks) cudaEventDestroy(mark.second);  // best effort at teardown
      if (slot.begin) cudaEventDestroy(slot.begin);
    }
  }

  void start(int64_t step) override {
    current_ = (current_ + 1) % kSlots;
    Slot& slot = slots_[current_];
    slot.step = step;
    slot.used = 0;
    slot.taken = false;
    slot.open = true;
    if (!slot.begin) slot.begin = create();
    record(slot.begin);
  }

  void mark(const std::string& phase) override {
    Slot& slot = slots_[current_];
    if (!slot.open) return;
    if (slot.used == slot.marks.size()) slot.marks.emplace_back(phase, create());
    slot.marks[slot.used].first = phase;
    record(slot.marks[slot.used].second);
    ++slot.used;
  }

  bool take(int64_t& step, PhaseTimes& phases) override {
    // Newest first, skipping the step in progress (its later marks are still to come).
    for (size_t back = 1; back < kSlots; ++back) {
      Slot& slot = slots_[(current_ + kSlots - back) % kSlots];
      if (!slot.open || slot.used == 0) continue;
      if (slot.taken) return false;  // the newest finished step was returned already
      const cudaError_t ready = cudaEventQuery(slot.marks[slot.used - 1].second);
      if (ready == cudaErrorNotReady) return false;  // older steps were returned already or are older still
      CUDA_CHECK(ready);
      phases.clear();
      cudaEvent_t previous = slot.begin;
      for (size_t i = 0; i < slot.used; ++i) {
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, previous, slot.marks[i].second));
        phases.emplace_back(slot.marks[i].first, static_cast<double>(ms));
        previous = slot.marks[i].second;
      }
      step = slot.step;
      slot.taken = true;
      return true;
    }
    return false;
  }

 private:
  struct Slot {
    int64_t step = -1;
    bool open = false, taken = false;
    cudaEvent_t begin = nullptr;
    std::vector<std::pair<std::string, cudaEvent_t>> marks;  // reused from step to step
    size_t used = 0;
  };

  cudaEvent_t create() {
    const c10::cuda::CUDAGuard guard(device_);
    cudaEvent_t event = nullptr;
    CUDA_CHECK(cudaEventCreate(&event));
    return event;
  }

  void record(cudaEvent_t event) {
    const c10::cuda::CUDAGuard guard(device_);
    CUDA_CHECK(cudaEventRecord(event, c10::cuda::getCurrentCUDAStream(device_).stream()));
  }

  c10::DeviceIndex device_;
  std::array<Slot, kSlots> slots_{};
  size_t current_ = 0;
};

}  // namespace

std::unique_ptr<PhaseDeviceEvents> make_phase_device_events(int cuda_device) {
  return std::make_unique<CudaPhaseEvents>(cuda_device);
}

}  // namespace keel
