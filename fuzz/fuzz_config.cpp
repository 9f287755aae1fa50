// Fuzz target: config files and --set values (common/config.h, worker/run_config.h). The input's
// first line-block up to a NUL byte is a YAML document applied to a RunConfig; every line after it
// is a `section.key=value` override. Bad input must end in a ConfigError (a clear message naming the
// key), never in a crash or another exception; a config that loads must write out (to_yaml) and
// load back to the same flattened values.
#include <cstdint>
#include <string>

#include "common/config.h"
#include "worker/run_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const auto split = input.find('\0');
  const std::string yaml = input.substr(0, split);
  keel::RunConfig config;
  try {
    auto sections = config.sections();
    keel::apply_yaml_text(sections, yaml, "fuzz.yaml");
    if (split != std::string::npos) {
      size_t at = split + 1;
      while (at <= input.size()) {
        const auto end = input.find('\n', at);
        const std::string line = input.substr(at, end == std::string::npos ? std::string::npos : end - at);
        if (!line.empty()) keel::apply_override(sections, line);
        if (end == std::string::npos) break;
        at = end + 1;
      }
    }
    config.validate();
  } catch (const keel::ConfigError&) {
    return 0;  // refused with a message
  }
  // Accepted: the resolved config must round-trip.
  const std::string written = config.to_yaml();
  keel::RunConfig again;
  auto again_sections = again.sections();
  keel::apply_yaml_text(again_sections, written, "round-trip.yaml");  // must not throw
  again.validate();
  if (keel::flatten(again.sections()) != keel::flatten(config.sections())) __builtin_trap();
  return 0;
}
