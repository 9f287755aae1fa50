// Fuzz target: checkpoint manifests (checkpoint/manifest.h). Any text is either a manifest, which
// then writes out and parses back to the same thing, or refused with a CheckpointError.
#include <cstdint>
#include <string>

#include "checkpoint/manifest.h"
#include "common/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  keel::checkpoint::Manifest m;
  try {
    m = keel::checkpoint::manifest_from_json(text, "fuzz/manifest.json");
  } catch (const keel::KeelError&) {
    return 0;
  }
  const std::string written = keel::checkpoint::manifest_to_json(m);
  const auto again = keel::checkpoint::manifest_from_json(written, "round-trip");  // must not throw
  if (again.step != m.step || again.files.size() != m.files.size() || again.info != m.info) __builtin_trap();
  for (size_t i = 0; i < m.files.size(); ++i) {
    if (again.files[i].name != m.files[i].name || again.files[i].size != m.files[i].size ||
        again.files[i].crc32 != m.files[i].crc32)
      __builtin_trap();
  }
  return 0;
}
