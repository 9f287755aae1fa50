// The record of one training step: metrics.jsonl (world rank 0) and the StepMetrics stream to the
// coordinator (every rank; /metrics shows rank 0's training values and every rank's own), with
// throughput, MFU and the GPU memory peak. Keys: metrics/metric_keys.h. Torch-free: the trainer
// hands over host numbers it already read.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "metrics/jsonl_log.h"
#include "metrics/throughput.h"

namespace keel::coord {
class CoordinatorClient;
}

namespace keel {

struct StepRecordFacts {
  int64_t tokens_per_step = 0;  // global: every DP replica's batch
  double flops_per_token = 0;   // model FLOPs per trained token (6N + 12 L d T)
  double job_peak_flops = 0;    // peak of every device of the job; 0: MFU not reported
  int cuda_device = -1;         // the GPU whose memory peak is recorded; -1: CPU
};

class StepRecorder {
 public:
  // `metrics_path` empty: this rank writes no metrics.jsonl. `coordinator` may be null; borrowed.
  StepRecorder(StepRecordFacts facts, std::vector<std::string> layer_names, const std::string& metrics_path,
               coord::CoordinatorClient* coordinator);

  // The first fields of step `step`'s record.
  nlohmann::json open(int64_t step, double loss, double grad_norm, double lr) const;
  // Completes an applied or skipped step's record (timing, throughput, MFU, tokens seen, memory,
  // per-layer grad norms: (G) values in layer_names order), reports it to the coordinator and
  // appends it to metrics.jsonl. `first_step`: the first step of this stretch (after a start,
  // resume or rollback): its first steps are warm-up, marked and not timed (metrics/throughput.h).
  void close(nlohmann::json& record, int64_t step, int64_t first_step, double step_seconds, int64_t tokens_seen,
             const std::vector<double>& layer_grad_norms);
  // A record that ends its step early (rollback, abort, restart): appended only.
  void append(const nlohmann::json& record);
  // Resume: drop metrics.jsonl's records from `step` on (they belong to the abandoned future).
  void truncate_from(int64_t step);

  double step_time_ema() const { return step_time_ema_; }
  double mean_tokens_per_second() const { return throughput_.tokens_per_second(); }  // NaN: none timed

 private:
  StepRecordFacts facts_;
  std::vector<std::string> layer_names_;
  std::unique_ptr<JsonLinesLog> metrics_;
  coord::CoordinatorClient* coordinator_;
  double step_time_ema_ = 0;
  throughput::Meter throughput_;
};

}  // namespace keel
