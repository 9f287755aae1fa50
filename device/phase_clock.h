// Where a training step's time goes, phase by phase, on the host and on the GPU (issue 24: Keel's
// own timeline beside eager's and compile's profiles).
//
// The trainer calls start() when a step begins and mark("forward_backward"), mark("reduce"), ...
// when each phase's work has been issued. Two clocks:
//   host   the wall time between marks: launch overhead and the host's waits (a host read of the
//          GPU's results makes its phase wait for everything queued before it);
//   device on CUDA, events recorded on the current stream at each mark: the GPU time between the
//          marks, including any idle time the stream spent waiting for the host to queue work.
// Device events are read without waiting: take_device_phases() returns the newest step whose
// events have all completed, normally the step before the current one (the current step's host
// read has not passed its last event yet). A CPU process has no device clock (cuda_device -1).
// Torch-free header; the CUDA implementation (phase_clock_cuda.cpp) is compiled only where LibTorch
// has CUDA and uses its current stream.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace keel {

using PhaseTimes = std::vector<std::pair<std::string, double>>;  // (phase, milliseconds), in order

// The device clock behind PhaseClock: CUDA events (phase_clock_cuda.cpp). make_phase_device_events
// returns nullptr in builds whose LibTorch has no CUDA (phase_clock_cpu.cpp).
class PhaseDeviceEvents {
 public:
  virtual ~PhaseDeviceEvents() = default;
  virtual void start(int64_t step) = 0;
  virtual void mark(const std::string& phase) = 0;
  virtual bool take(int64_t& step, PhaseTimes& phases) = 0;
};
std::unique_ptr<PhaseDeviceEvents> make_phase_device_events(int cuda_device);

class PhaseClock {
 public:
  // cuda_device -1: host clock only. between_steps: the name of the device phase that closes each
  // step at the next start(): the GPU time from the step's last mark to the next step's first, i.e.
  // the rest of the step's work plus the time the GPU waited for the host's bookkeeping between
  // steps (empty: not measured). Host phases never include it (the host clock has no "next" yet
  // when the step's record is written).
  explicit PhaseClock(int cuda_device, std::string between_steps = "");
  ~PhaseClock();
  PhaseClock(const PhaseClock&) = delete;
  PhaseClock& operator=(const PhaseClock&) = delete;

  void start(int64_t step);
  void mark(const std::string& phase);
  // This step's host time per phase so far.
  const PhaseTimes& host_phases() const { return host_; }
  // The device time per phase of the newest step whose events are complete, and that step; false
  // when none is ready (or on the CPU). Each completed step is returned once.
  bool take_device_phases(int64_t& step, PhaseTimes& phases);

 private:
  std::string between_steps_;
  bool open_ = false;  // a step was started and not yet closed by the next start()
  double last_mark_ms_ = 0;
  PhaseTimes host_;
  std::unique_ptr<PhaseDeviceEvents> device_;  // null: host clock only
};

}  // namespace keel
