// Builds whose LibTorch has no CUDA: no device clock (see phase_clock.h).
#include "device/phase_clock.h"

namespace keel {

std::unique_ptr<PhaseDeviceEvents> make_phase_device_events(int) { return nullptr; }

}  // namespace keel
