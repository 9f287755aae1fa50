// A run's throughput (see run_throughput.h).
#include "registry/run_throughput.h"

#include <algorithm>
#include <cmath>

#include "metrics/throughput.h"

namespace keel::registry {

double run_tokens_per_second(const std::vector<StepMetric>& metrics) {
  // Every run's first step is warm-up, so marked files have at least one mark.
  const bool marked = std::any_of(metrics.begin(), metrics.end(), [](const StepMetric& m) { return m.warmup; });
  throughput::Meter meter;
  int64_t since_start = 0;
  for (const auto& m : metrics) {
    if (m.rollback_to >= 0) {  // the record of a rolled-back step: a new stretch follows
      since_start = 0;
      continue;
    }
    // Only completed steps carry a step time (an abort's record does not).
    if (!std::isfinite(m.step_time) || !std::isfinite(m.tokens_per_second)) continue;
    const bool warmup = marked ? m.warmup : throughput::is_warmup(since_start);
    since_start++;
    meter.add(m.step_time, m.tokens_per_second * m.step_time, warmup);
  }
  return meter.tokens_per_second();
}

}  // namespace keel::registry
