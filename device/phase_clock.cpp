// The host side of PhaseClock (see phase_clock.h): wall time between marks.
#include "device/phase_clock.h"

#include <chrono>
#include <utility>

namespace keel {
namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

PhaseClock::PhaseClock(int cuda_device, std::string between_steps) : between_steps_(std::move(between_steps)) {
  if (cuda_device >= 0) device_ = make_phase_device_events(cuda_device);
}

PhaseClock::~PhaseClock() = default;

void PhaseClock::start(int64_t step) {
  if (open_ && device_ && !between_steps_.empty()) device_->mark(between_steps_);
  open_ = true;
  host_.clear();
  last_mark_ms_ = now_ms();
  if (device_) device_->start(step);
}

void PhaseClock::mark(const std::string& phase) {
  const double now = now_ms();
  host_.emplace_back(phase, now - last_mark_ms_);
  last_mark_ms_ = now;
  if (device_) device_->mark(phase);
}

bool PhaseClock::take_device_phases(int64_t& step, PhaseTimes& phases) {
  return device_ && device_->take(step, phases);
}

}  // namespace keel
