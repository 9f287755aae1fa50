// DiagnosticsConfig validation (see diagnostics_config.h).
#include "diagnostics/diagnostics_config.h"

#include <string>

namespace keel {

void DiagnosticsConfig::validate() const {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw ConfigError(message);
  };
  require(every >= 0, "diagnostics.every must be >= 0");
  require(probe_batch_size >= 1, "diagnostics.probe_batch_size must be >= 1");
  require(entropy_overload_threshold >= 0.0 && entropy_overload_threshold <= 1.0,
          "diagnostics.entropy_overload_threshold must be in [0, 1]");
  require(sparsity_threshold >= 0.0, "diagnostics.sparsity_threshold must be >= 0");
}

}  // namespace keel
