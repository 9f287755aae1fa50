// One step's record (see step_record.h).
#include "worker/step_record.h"

#include "device/device_memory.h"
#include "metrics/metric_keys.h"
#include "rpc/coordinator_client.h"

namespace keel {

StepRecorder::StepRecorder(StepRecordFacts facts, std::vector<std::string> layer_names,
                           const std::string& metrics_path, coord::CoordinatorClient* coordinator)
    : facts_(facts), layer_names_(std::move(layer_names)), coordinator_(coordinator) {
  if (!metrics_path.empty()) metrics_ = std::make_unique<JsonLinesLog>(metrics_path);
}

nlohmann::json StepRecorder::open(int64_t step, double loss, double grad_norm, double lr) const {
  return {{metric_key::kStep, step}, {metric_key::kLoss, loss}, {metric_key::kGradNorm, grad_norm}, {metric_key::kLr, lr}};
}

void StepRecorder::close(nlohmann::json& record, int64_t step, int64_t first_step, double step_seconds,
                         int64_t tokens_seen, const std::vector<double>& layer_grad_norms) {
  const bool warmup = throughput::is_warmup(step - first_step);
  throughput_.add(step_seconds, static_cast<double>(facts_.tokens_per_step), warmup);
  if (warmup) record[metric_key::kWarmup] = true;
  step_time_ema_ = step == first_step ? step_seconds : 0.9 * step_time_ema_ + 0.1 * step_seconds;
  const double tokens = static_cast<double>(facts_.tokens_per_step);
  record[metric_key::kStepTime] = step_seconds;
  record[metric_key::kTokensPerSecond] = tokens / step_seconds;
  if (facts_.job_peak_flops > 0)
    record[metric_key::kMfu] = facts_.flops_per_token * tokens / step_seconds / facts_.job_peak_flops;
  record[metric_key::kTokensSeen] = tokens_seen;
  if (facts_.cuda_device >= 0) record[metric_key::kGpuMemoryPeak] = cuda_peak_allocated_bytes(facts_.cuda_device);
  nlohmann::json layer_norms;
  for (size_t i = 0; i < layer_names_.size(); ++i) layer_norms[layer_names_[i]] = layer_grad_norms[i];
  record[metric_key::kLayerGradNorms] = layer_norms;
  if (coordinator_) {
    coordinator_->set_step(step);
    coordinator_->report_metrics_async(step, metric_key::wire_values(record));
  }
  append(record);
}

void StepRecorder::append(const nlohmann::json& record) {
  if (metrics_) metrics_->append(record);
}

void StepRecorder::truncate_from(int64_t step) {
  if (metrics_) metrics_->truncate_from_step(step);
}

}  // namespace keel
