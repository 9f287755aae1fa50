// CPU-only builds: no device memory to report (see device_memory.h).
#include "device/device_memory.h"

namespace keel {
int64_t cuda_peak_allocated_bytes(int) { return 0; }
void cuda_reset_peak_memory(int) {}
int cuda_device_count() { return 0; }
double cuda_peak_bf16_flops(int) { return 0; }
int64_t cuda_total_memory_bytes(int) { return 0; }
}  // namespace keel
