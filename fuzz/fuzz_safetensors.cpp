// Fuzz target: safetensors files (checkpoint/safetensors.h), header and all. Any byte string is
// either a valid file, whose every tensor view lies inside the file (read fully here, in both read
// modes), or refused with a CheckpointError/KeelError that says why.
#include <cstdint>
#include <string>

#include "checkpoint/safetensors.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = keel::fuzz::write_scratch("t.safetensors", data, size);
  for (auto mode : {keel::checkpoint::SafetensorsFile::Mode::kMmap, keel::checkpoint::SafetensorsFile::Mode::kRead}) {
    try {
      keel::checkpoint::SafetensorsFile file(path, mode);
      uint64_t sum = 0;
      for (const auto& name : file.names()) {
        const auto view = file.view(name);
        const auto* bytes = static_cast<const uint8_t*>(view.data);
        for (size_t i = 0; i < view.nbytes; ++i) sum += bytes[i];
      }
      (void)file.metadata();
      if (sum == 1) (void)sum;
    } catch (const keel::KeelError&) {
    }
  }
  return 0;
}
