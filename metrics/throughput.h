// The one definition of training throughput, for every report of a run (the end-of-run summary,
// run_info.json, `keel runs`, `keel compare`): the tokens of the timed steps divided by their wall
// time (the sum of their step times). A step is timed unless it is one of the first kWarmupSteps
// after a start, a resume or a rollback, which pay for allocator, kernel and cache warm-up;
// metrics.jsonl marks those records "warmup": true (metric_key::kWarmup). A run with no timed step
// has no throughput (NaN), never 0. Torch-free.
#pragma once

#include <cstdint>

namespace keel::throughput {

inline constexpr int64_t kWarmupSteps = 3;

// Whether the step `steps_since_start` steps after a start, resume or rollback is warm-up.
inline bool is_warmup(int64_t steps_since_start) { return steps_since_start < kWarmupSteps; }

// Sums the timed steps.
class Meter {
 public:
  void add(double step_seconds, double tokens, bool warmup) {
    if (warmup) return;
    seconds_ += step_seconds;
    tokens_ += tokens;
    timed_steps_++;
  }
  int64_t timed_steps() const { return timed_steps_; }
  // NaN when no step was timed.
  double tokens_per_second() const;

 private:
  double seconds_ = 0, tokens_ = 0;
  int64_t timed_steps_ = 0;
};

}  // namespace keel::throughput
