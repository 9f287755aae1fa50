// The vocabulary workers use when they report to the coordinator, and what each word means for
// /metrics: StepMetrics value keys ("loss", "layer_grad_norm.block.3",
// "diag.layer2.head5.attention_entropy", ...) and Event kinds and actions. Parsing lives here,
// apart from prometheus-cpp, so that the mapping is unit-tested without HTTP and so that anything a
// worker sends becomes a bounded label value (an unknown layer name or event kind never creates a
// new series of its own). Torch-free.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

// The names of one step's values: metrics.jsonl records (the trainer), the worker -> coordinator
// StepMetrics keys ("wire" names, where they differ), and what `keel compare`, the registry and
// the benchmarks read back.
namespace keel::metric_key {

inline constexpr const char* kStep = "step";
inline constexpr const char* kLoss = "loss";
inline constexpr const char* kGradNorm = "grad_norm";
inline constexpr const char* kZLoss = "z_loss";                   // train.z_loss: mean logsumexp(logits)^2
inline constexpr const char* kLr = "lr";
inline constexpr const char* kEvents = "events";                  // the step's stability event kinds
inline constexpr const char* kBaselineShift = "baseline_shift";   // the loss baseline followed a level shift
inline constexpr const char* kUpdateRatio = "update_ratio";
inline constexpr const char* kSkipped = "skipped";                // the monitor kept the update off the weights
inline constexpr const char* kRollbackTo = "rollback_to";         // the step a rollback restored
inline constexpr const char* kRolledBackTokens = "rolled_back_tokens";
inline constexpr const char* kValLoss = "val_loss";
inline constexpr const char* kValPerplexity = "val_perplexity";
inline constexpr const char* kStepTime = "step_time";             // seconds (metrics.jsonl)
// Where the step's time went (device/phase_clock.h), {phase: milliseconds}, metrics.jsonl only:
// host wall time of this step's phases, and the GPU time of the phases of step device_phase_step
// (normally the step before: read without waiting for the GPU).
inline constexpr const char* kHostPhaseMs = "host_phase_ms";
inline constexpr const char* kDevicePhaseMs = "device_phase_ms";
inline constexpr const char* kDevicePhaseStep = "device_phase_step";
inline constexpr const char* kTokensPerSecond = "tokens_per_second";
inline constexpr const char* kWarmup = "warmup";                  // not timed for throughput (throughput.h)
inline constexpr const char* kMfu = "mfu";
inline constexpr const char* kTokensSeen = "tokens_seen";
inline constexpr const char* kGpuMemoryPeak = "gpu_memory_peak_bytes";  // metrics.jsonl
inline constexpr const char* kLayerGradNorms = "layer_grad_norms";     // {layer: norm} (metrics.jsonl)
inline constexpr const char* kCheckpointSaveSeconds = "checkpoint_save_seconds";
inline constexpr const char* kCheckpointBytes = "checkpoint_bytes";
// Bytes of optimizer state (both AdamW moments) the rank holds: all of them, or its 1/dp share
// with parallel.shard_optimizer. Reported once per process start, per rank.
inline constexpr const char* kOptimizerStateBytes = "optimizer_state_bytes";
// Wire names (StepMetrics) where the record's name differs.
inline constexpr const char* kWireStepTime = "step_time_seconds";
inline constexpr const char* kWireGpuMemory = "gpu_memory_bytes";
inline constexpr const char* kWireLayerGradNormPrefix = "layer_grad_norm.";  // + layer
inline constexpr const char* kDiagnosticsPrefix = "diag.";                   // model diagnostics

// One metrics.jsonl record as the StepMetrics values sent to the coordinator: numbers and flags
// under their wire names, per-layer grad norms flattened, "skipped" always present (0 or 1);
// the step and the event list are not values.
std::map<std::string, double> wire_values(const nlohmann::json& record);

}  // namespace keel::metric_key

// The phases of a training step in host_phase_ms / device_phase_ms, in order.
namespace keel::phase_name {
inline constexpr const char* kForwardBackward = "forward_backward";  // batch, forward and backward
inline constexpr const char* kReduce = "reduce";                     // gradients over DP (and the loss)
inline constexpr const char* kSignals = "signals";                   // norms, the host read, the verdict
inline constexpr const char* kUpdate = "update";                     // clipping, AdamW, weight all-gather
// device_phase_ms only: from the step's last mark to the next step's start (evaluation, checkpoint
// and the GPU's wait for the host's bookkeeping between steps).
inline constexpr const char* kBetweenSteps = "between_steps";
}  // namespace keel::phase_name

namespace keel::coord {

// One StepMetrics value key, resolved.
enum class ValueMetric {
  kLoss,
  kValLoss,
  kGradNorm,
  kLearningRate,
  kTokensPerSecond,
  kMfu,
  kStepTime,
  kSkipped,
  kUpdateRatio,
  kZLoss,
  kTokensSeen,
  kGpuMemory,
  kCheckpointSaveSeconds,
  kCheckpointBytes,
  kOptimizerStateBytes,
  kLayerGradNorm,              // layer label
  kEmbeddingOutputStd,
  kAttentionEntropyOverload,
  kAttentionEntropy,           // layer and head labels
  kAttentionNormalisedEntropy,  // layer and head labels
  kLinearity,                  // layer label (and the rest below)
  kLinearityWithoutResidual,
  kMlpSparsity,
  kMlpExactlyZero,
  kAttentionOutputRms,
  kMlpOutputRms,
  kAttentionMaxLogit,         // layer label
  kUnknown,
};

struct ValueKey {
  ValueMetric metric = ValueMetric::kUnknown;
  std::string layer;  // "embedding", "block.<i>" or "head"; empty when the metric has no layer
  std::string head;   // "<h>"; empty when the metric has no head
};

// Resolves a value key. Keys that do not follow the vocabulary (including layer or head indices
// beyond kMaxIndex) resolve to kUnknown.
ValueKey parse_value_key(const std::string& key);
constexpr int kMaxIndex = 9999;

// Event kinds the stability monitor detects (each counted as a spike of that kind).
const std::vector<std::string>& detection_kinds();
// What a rollback, abort or restart is attributed to: a detection kind, or the lifecycle kind
// ("rollback", "abort", "restart") when only a lifecycle event announced it.
const std::vector<std::string>& trigger_kinds();
constexpr const char* kOtherKind = "other";  // the label value of kinds outside the vocabulary

bool is_detection_kind(const std::string& kind);
// `kind` itself when it is a detection or lifecycle kind, otherwise kOtherKind.
std::string bounded_trigger_kind(const std::string& kind);

// What an event means for the rollback / abort / restart counters.
enum class Consequence { kNone, kRollback, kAbort, kRestart };
// From the action ("rollback", "abort", "remedy_restart") of a detection event.
Consequence consequence_of_action(const std::string& action);
// From the kind of a lifecycle event ("rollback", "abort", "restart"); kNone for other kinds.
Consequence consequence_of_lifecycle_kind(const std::string& kind);

}  // namespace keel::coord
