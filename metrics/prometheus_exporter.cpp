// The coordinator's /metrics: families, the mapping of worker reports onto them, and the Exposer
// (see metrics_exporter.h).
#include "metrics/prometheus_exporter.h"

#include <chrono>
#include <cmath>
#include <exception>

#include "common/check.h"

namespace keel::coord {
namespace {

// Step times from a few milliseconds (small GPU models) to a minute (large models on CPUs).
const prometheus::Histogram::BucketBoundaries kStepTimeBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60};
// Checkpoint saves from a small CPU model to a large sharded GPU model on network storage.
const prometheus::Histogram::BucketBoundaries kCheckpointSaveBuckets = {
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};

struct TrainingGaugeSpec {
  ValueMetric metric;
  const char* name;
  const char* help;
};

// Values taken from rank 0 (training-wide after the step's reductions), set as they arrive.
const TrainingGaugeSpec kTrainingGauges[] = {
    {ValueMetric::kLoss, "keel_loss", "Training loss of the newest step (mean cross-entropy, nats per token)"},
    {ValueMetric::kValLoss, "keel_val_loss", "Validation loss of the newest evaluation (nats per token)"},
    {ValueMetric::kGradNorm, "keel_grad_norm", "Global gradient L2 norm of the newest step, before clipping"},
    {ValueMetric::kLearningRate, "keel_learning_rate", "Learning rate of the newest step"},
    {ValueMetric::kTokensPerSecond, "keel_tokens_per_second", "Training throughput of the whole job in tokens per second"},
    {ValueMetric::kMfu, "keel_mfu_ratio", "Model FLOPs utilisation (0..1)"},
    {ValueMetric::kUpdateRatio, "keel_update_ratio", "Update-to-weight norm ratio of the newest step"},
    {ValueMetric::kZLoss, "keel_z_loss", "Mean squared log-partition of the output softmax (train.z_loss's term)"},
    {ValueMetric::kTokensSeen, "keel_tokens_seen", "Training tokens consumed so far (goes back on a rollback)"},
    {ValueMetric::kLayerGradNorm, "keel_layer_grad_norm", "Gradient L2 norm of one layer (embedding, block.<i>, head)"},
    {ValueMetric::kEmbeddingOutputStd, "keel_embedding_output_std",
     "Standard deviation of the embedding output on the probe batch (Spike No More: near 1 is healthy)"},
    {ValueMetric::kAttentionEntropyOverload, "keel_attention_entropy_overload_ratio",
     "Fraction of attention heads whose entropy is near its maximum (0..1)"},
    {ValueMetric::kAttentionEntropy, "keel_attention_entropy",
     "Attention entropy of one head on the probe batch (nats)"},
    {ValueMetric::kAttentionNormalisedEntropy, "keel_attention_normalised_entropy_ratio",
     "Attention entropy of one head divided by its maximum (0..1)"},
    {ValueMetric::kLinearity, "keel_layer_linearity",
     "How well a linear map explains the block's output from its input (1: linear)"},
    {ValueMetric::kLinearityWithoutResidual, "keel_layer_linearity_without_residual",
     "Linearity score of the block with its residual connection removed"},
    {ValueMetric::kMlpSparsity, "keel_mlp_sparsity_ratio", "Fraction of near-zero MLP activations of the block (0..1)"},
    {ValueMetric::kMlpExactlyZero, "keel_mlp_exactly_zero_ratio",
     "Fraction of exactly-zero MLP activations of the block (0..1)"},
    {ValueMetric::kAttentionOutputRms, "keel_attention_output_rms", "RMS of the block's attention sublayer output"},
    {ValueMetric::kMlpOutputRms, "keel_mlp_output_rms", "RMS of the block's MLP sublayer output"},
    {ValueMetric::kAttentionMaxLogit, "keel_attention_max_logit",
     "Largest pre-softmax attention score q.k/sqrt(D) of the block on the probe batch (QK-norm bounds it)"},
};

prometheus::Labels key_labels(const ValueKey& key) {
  prometheus::Labels labels;
  if (!key.layer.empty()) labels["layer"] = key.layer;
  if (!key.head.empty()) labels["head"] = key.head;
  return labels;
}

prometheus::Labels rank_labels(int rank) {
  return {{"rank", std::to_string(rank)}};
}

}  // namespace

MetricsExporter::MetricsExporter(MetricsOptions options, JobSnapshotSource job)
    : options_(std::move(options)), registry_(std::make_shared<prometheus::Registry>()) {
  KEEL_CHECK(!options_.run.empty(), "the metrics `run` label must not be empty");
  KEEL_CHECK(!options_.recipe.empty(), "the metrics `recipe` label must not be empty");
  KEEL_CHECK(options_.port >= -1 && options_.port <= 65535,
             "metrics port must be -1 (off), 0 (any free port) or 1..65535, got " << options_.port);
  constant_labels_ = {{"run", options_.run}, {"recipe", options_.recipe}};
  job_health_ = std::make_shared<JobHealthCollector>(std::move(job), constant_labels_);

  for (const auto& spec : kTrainingGauges) training_gauges_[spec.metric] = &gauge(spec.name, spec.help);
  step_ = &gauge("keel_step", "Newest training step reported by rank 0");
  last_step_time_ = &gauge("keel_last_step_timestamp_seconds",
                           "Unix time at which the coordinator received rank 0's newest step");
  gpu_memory_ = &gauge("keel_gpu_memory_bytes", "GPU memory allocated by the rank's process");
  checkpoint_size_ = &gauge("keel_checkpoint_size_bytes", "Bytes the rank wrote for its newest checkpoint");
  optimizer_state_ = &gauge("keel_optimizer_state_bytes",
                            "Bytes of AdamW moments the rank holds (its 1/dp share with parallel.shard_optimizer)");
  step_time_ = &histogram("keel_step_time_seconds", "Wall time of one training step on the rank");
  checkpoint_save_ = &histogram("keel_checkpoint_save_seconds", "Wall time of one checkpoint save on the rank");
  skipped_ = &counter("keel_skipped_steps_total", "Steps whose update the stability monitor skipped");
  spikes_ = &counter("keel_spikes_total",
                     "Anomalies the stability monitor detected, by kind (nonfinite, grad_explosion, "
                     "loss_spike, sustained_spike, update_ratio)");
  recoveries_ = &counter("keel_recoveries_total", "Returns of the stability monitor from suspect to healthy");
  rollbacks_ = &counter("keel_rollbacks_total", "Rollbacks to the last good checkpoint, by triggering kind");
  aborts_ = &counter("keel_aborts_total", "Runs the stability monitor aborted (rollbacks exhausted), by kind");
  restarts_ = &counter("keel_restarts_total", "Remedy restarts from step 0 with the Spike No More recipe, by kind");
  reported_steps_ = &counter("keel_worker_reported_steps_total", "StepMetrics received from the rank");
  events_received_ = &counter("keel_worker_events_total", "Stability and lifecycle events received from the rank");
  ignored_values_ = &counter("keel_metrics_ignored_values_total",
                             "Reported values whose key is not in the coordinator's vocabulary");

  // Counters exist at 0 from the start so that increase() sees their first event.
  skipped_->Add({});
  recoveries_->Add({});
  ignored_values_->Add({});
  for (const auto& kind : detection_kinds()) spikes_->Add({{"kind", kind}});
  for (const auto& kind : trigger_kinds()) {
    rollbacks_->Add({{"kind", kind}});
    aborts_->Add({{"kind", kind}});
    restarts_->Add({{"kind", kind}});
  }
}

MetricsExporter::~MetricsExporter() = default;

MetricsExporter::GaugeFamily& MetricsExporter::gauge(const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Labels(constant_labels_).Register(*registry_);
}

MetricsExporter::CounterFamily& MetricsExporter::counter(const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Labels(constant_labels_).Register(*registry_);
}

MetricsExporter::HistogramFamily& MetricsExporter::histogram(const std::string& name, const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Labels(constant_labels_).Register(*registry_);
}

void MetricsExporter::start() {
  KEEL_CHECK(!exposer_, "metrics exporter already started");
  if (options_.port < 0) return;
  const bool ipv6 = options_.address.find(':') != std::string::npos;
  const std::string bind = (ipv6 ? "[" + options_.address + "]" : options_.address) + ":" +
                           std::to_string(options_.port);
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(bind, 2);
  } catch (const std::exception& e) {
    throw KeelError("cannot serve /metrics on " + bind + " (bad address or port in use): " + e.what());
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(job_health_);
  const auto ports = exposer_->GetListeningPorts();
  KEEL_CHECK(!ports.empty() && ports.front() > 0, "/metrics server on " << bind << " reports no listening port");
  port_ = ports.front();
}

std::string MetricsExporter::address() const {
  const bool ipv6 = options_.address.find(':') != std::string::npos;
  return (ipv6 ? "[" + options_.address + "]" : options_.address) + ":" + std::to_string(port_);
}

std::vector<prometheus::MetricFamily> MetricsExporter::collect() const {
  auto families = registry_->Collect();
  auto health = job_health_->Collect();
  families.insert(families.end(), health.begin(), health.end());
  return families;
}

void MetricsExporter::record(int rank, const std::vector<StepRecord>& steps,
                             const std::vector<EventRecord>& events) {
  const prometheus::Labels by_rank = rank_labels(rank);
  if (!steps.empty()) reported_steps_->Add(by_rank).Increment(static_cast<double>(steps.size()));
  if (!events.empty()) events_received_->Add(by_rank).Increment(static_cast<double>(events.size()));
  for (const auto& step : steps) {
    if (rank == 0) step_->Add({}).Set(static_cast<double>(step.step));
    for (const auto& [key, value] : step.values) record_value(rank, key, value);
  }
  if (rank == 0 && !steps.empty()) {
    const std::chrono::duration<double> since_epoch = std::chrono::system_clock::now().time_since_epoch();
    last_step_time_->Add({}).Set(since_epoch.count());
  }
  if (rank != 0) return;  // every rank's monitor reaches the same verdict: count rank 0's
  for (const auto& event : events) record_event(event);
}

void MetricsExporter::record_value(int rank, const std::string& key, double value) {
  const ValueKey parsed = parse_value_key(key);
  switch (parsed.metric) {
    case ValueMetric::kUnknown:
      ignored_values_->Add({}).Increment();
      return;
    case ValueMetric::kStepTime:
      if (std::isfinite(value) && value >= 0) step_time_->Add(rank_labels(rank), kStepTimeBuckets).Observe(value);
      return;
    case ValueMetric::kCheckpointSaveSeconds:
      if (std::isfinite(value) && value >= 0) {
        checkpoint_save_->Add(rank_labels(rank), kCheckpointSaveBuckets).Observe(value);
      }
      return;
    case ValueMetric::kCheckpointBytes:
      checkpoint_size_->Add(rank_labels(rank)).Set(value);
      return;
    case ValueMetric::kGpuMemory:
      gpu_memory_->Add(rank_labels(rank)).Set(value);
      return;
    case ValueMetric::kOptimizerStateBytes:
      optimizer_state_->Add(rank_labels(rank)).Set(value);
      return;
    case ValueMetric::kSkipped:
      if (rank == 0 && value != 0) skipped_->Add({}).Increment();
      return;
    default:
      if (rank != 0) return;  // training-wide values come from rank 0
      training_gauges_.at(parsed.metric)->Add(key_labels(parsed)).Set(value);
  }
}

void MetricsExporter::record_event(const EventRecord& event) {
  std::lock_guard<std::mutex> lock(events_mu_);
  if (is_detection_kind(event.kind)) {
    spikes_->Add({{"kind", event.kind}}).Increment();
    count_consequence(consequence_of_action(event.action), event.kind, event.step, false);
  } else if (event.kind == "recovered") {
    recoveries_->Add({}).Increment();
  } else {
    count_consequence(consequence_of_lifecycle_kind(event.kind), event.kind, event.step, true);
  }
}

void MetricsExporter::count_consequence(Consequence consequence, const std::string& trigger_kind, int64_t step,
                                        bool from_lifecycle) {
  if (consequence == Consequence::kNone) return;
  LastConsequence& last = last_consequence_[consequence];
  if (!last.paired && last.step == step && last.from_lifecycle != from_lifecycle) {
    last.paired = true;  // the other announcement of the one already counted
    return;
  }
  last = {step, from_lifecycle, false};
  const prometheus::Labels labels{{"kind", bounded_trigger_kind(trigger_kind)}};
  switch (consequence) {
    case Consequence::kRollback: rollbacks_->Add(labels).Increment(); break;
    case Consequence::kAbort: aborts_->Add(labels).Increment(); break;
    case Consequence::kRestart: restarts_->Add(labels).Increment(); break;
    case Consequence::kNone: break;
  }
}

}  // namespace keel::coord
