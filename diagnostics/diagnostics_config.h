// DiagnosticsConfig: the "diagnostics" config section (Torch-free, so the run config can hold it).
#pragma once

#include <cstdint>

#include "common/config.h"

namespace keel {

// Config section "diagnostics".
struct DiagnosticsConfig {
  int64_t every = 100;                      // steps between diagnostics; 0 = off
  int64_t probe_batch_size = 4;             // sequences in the fixed probe batch
  double entropy_overload_threshold = 0.9;  // normalised entropy above which a head is overloaded
  double sparsity_threshold = 1e-3;         // |a| below this counts as (near-)zero

  void visit(ConfigVisitor& v) {
    v.field("every", every, "steps between model diagnostics; 0 = off");
    v.field("probe_batch_size", probe_batch_size, "sequences in the fixed probe batch");
    v.field("entropy_overload_threshold", entropy_overload_threshold,
            "normalised attention entropy (0..1) above which a head counts as overloaded");
    v.field("sparsity_threshold", sparsity_threshold, "MLP activations with |a| below this count as sparse");
  }
  void validate() const;
};

}  // namespace keel
