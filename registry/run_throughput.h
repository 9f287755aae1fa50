// A run's throughput from its metrics.jsonl records, by the one definition (metrics/throughput.h):
// what run_info.json, `keel runs` and `keel compare` report. Torch-free.
#pragma once

#include <vector>

#include "registry/run_registry.h"

namespace keel::registry {

// Tokens of the timed steps / their summed step times; NaN when no step was timed. Records without
// "warmup" marks (runs before they were written) take the first kWarmupSteps closed steps of the
// file and after each rollback as warm-up (a resume cannot be told from the records there).
double run_tokens_per_second(const std::vector<StepMetric>& metrics);

}  // namespace keel::registry
