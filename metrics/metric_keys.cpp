// Parsing of worker value keys and event words (see metric_keys.h). Hand-written prefix matching
// rather than std::regex: a diagnostics step carries a few hundred keys and this runs on the gRPC
// handler's thread.
#include "metrics/metric_keys.h"

#include "metrics/event_kinds.h"

#include <algorithm>
#include <map>

namespace keel::metric_key {

std::map<std::string, double> wire_values(const nlohmann::json& record) {
  std::map<std::string, double> values;
  for (const auto& [key, value] : record.items()) {
    if (key == kStep || key == kEvents || key == kWarmup || key == kDevicePhaseStep) continue;
    if (value.is_number()) {
      values[key == kStepTime ? kWireStepTime : key == kGpuMemoryPeak ? kWireGpuMemory : key] = value.get<double>();
    } else if (value.is_boolean()) {
      values[key] = value.get<bool>() ? 1.0 : 0.0;
    } else if (key == kLayerGradNorms) {
      for (const auto& [layer, norm] : value.items()) values[kWireLayerGradNormPrefix + layer] = norm.get<double>();
    }
  }
  if (!values.count(kSkipped)) values[kSkipped] = 0.0;
  return values;
}

}  // namespace keel::metric_key

namespace keel::coord {
namespace {

bool consume(const std::string& text, size_t& pos, const std::string& prefix) {
  if (text.compare(pos, prefix.size(), prefix) != 0) return false;
  pos += prefix.size();
  return true;
}

// A decimal index in [0, kMaxIndex] without leading zeros; advances `pos` past it.
bool consume_index(const std::string& text, size_t& pos, std::string& out) {
  size_t end = pos;
  while (end < text.size() && end - pos < 5 && text[end] >= '0' && text[end] <= '9') ++end;
  if (end == pos || (text[pos] == '0' && end - pos > 1)) return false;
  const std::string digits = text.substr(pos, end - pos);
  if (std::stoi(digits) > kMaxIndex) return false;
  out = digits;
  pos = end;
  return true;
}

const std::map<std::string, ValueMetric>& plain_keys() {
  static const std::map<std::string, ValueMetric> keys = {
      {metric_key::kLoss, ValueMetric::kLoss},
      {metric_key::kValLoss, ValueMetric::kValLoss},
      {metric_key::kGradNorm, ValueMetric::kGradNorm},
      {metric_key::kLr, ValueMetric::kLearningRate},
      {metric_key::kTokensPerSecond, ValueMetric::kTokensPerSecond},
      {metric_key::kMfu, ValueMetric::kMfu},
      {metric_key::kWireStepTime, ValueMetric::kStepTime},
      {metric_key::kSkipped, ValueMetric::kSkipped},
      {metric_key::kUpdateRatio, ValueMetric::kUpdateRatio},
      {metric_key::kZLoss, ValueMetric::kZLoss},
      {metric_key::kTokensSeen, ValueMetric::kTokensSeen},
      {metric_key::kWireGpuMemory, ValueMetric::kGpuMemory},
      {metric_key::kCheckpointSaveSeconds, ValueMetric::kCheckpointSaveSeconds},
      {metric_key::kCheckpointBytes, ValueMetric::kCheckpointBytes},
      {metric_key::kOptimizerStateBytes, ValueMetric::kOptimizerStateBytes},
      {"diag.embedding_output_std", ValueMetric::kEmbeddingOutputStd},
      {"diag.attention_entropy_overload_fraction", ValueMetric::kAttentionEntropyOverload},
  };
  return keys;
}

const std::map<std::string, ValueMetric>& per_head_diagnostics() {
  static const std::map<std::string, ValueMetric> keys = {
      {"attention_entropy", ValueMetric::kAttentionEntropy},
      {"attention_normalised_entropy", ValueMetric::kAttentionNormalisedEntropy},
  };
  return keys;
}

const std::map<std::string, ValueMetric>& per_layer_diagnostics() {
  static const std::map<std::string, ValueMetric> keys = {
      {"linearity", ValueMetric::kLinearity},
      {"linearity_without_residual", ValueMetric::kLinearityWithoutResidual},
      {"mlp_sparsity", ValueMetric::kMlpSparsity},
      {"mlp_exactly_zero", ValueMetric::kMlpExactlyZero},
      {"attention_output_rms", ValueMetric::kAttentionOutputRms},
      {"mlp_output_rms", ValueMetric::kMlpOutputRms},
      {"attention_max_logit", ValueMetric::kAttentionMaxLogit},
  };
  return keys;
}

// "layer_grad_norm.<embedding|head|block.<i>>"
ValueKey parse_layer_grad_norm(const std::string& key, size_t pos) {
  const std::string layer = key.substr(pos);
  if (layer == "embedding" || layer == "head") return {ValueMetric::kLayerGradNorm, layer, ""};
  std::string index;
  if (consume(key, pos, "block.") && consume_index(key, pos, index) && pos == key.size()) {
    return {ValueMetric::kLayerGradNorm, "block." + index, ""};
  }
  return {};
}

// "diag.layer<i>.<name>" or "diag.layer<i>.head<h>.<name>"
ValueKey parse_layer_diagnostic(const std::string& key, size_t pos) {
  std::string layer, head;
  if (!consume_index(key, pos, layer) || !consume(key, pos, ".")) return {};
  if (consume(key, pos, "head")) {
    if (!consume_index(key, pos, head) || !consume(key, pos, ".")) return {};
    auto it = per_head_diagnostics().find(key.substr(pos));
    if (it == per_head_diagnostics().end()) return {};
    return {it->second, "block." + layer, head};
  }
  auto it = per_layer_diagnostics().find(key.substr(pos));
  if (it == per_layer_diagnostics().end()) return {};
  return {it->second, "block." + layer, ""};
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

}  // namespace

ValueKey parse_value_key(const std::string& key) {
  auto it = plain_keys().find(key);
  if (it != plain_keys().end()) return {it->second, "", ""};
  size_t pos = 0;
  if (consume(key, pos, metric_key::kWireLayerGradNormPrefix)) return parse_layer_grad_norm(key, pos);
  if (consume(key, pos, "diag.layer")) return parse_layer_diagnostic(key, pos);
  return {};
}

const std::vector<std::string>& detection_kinds() {
  static const std::vector<std::string> kinds = {event_kind::kNonFinite, event_kind::kGradExplosion,
                                                 event_kind::kLossSpike, event_kind::kSustainedSpike,
                                                 event_kind::kUpdateRatio};
  return kinds;
}

const std::vector<std::string>& trigger_kinds() {
  static const std::vector<std::string> kinds = [] {
    std::vector<std::string> k = detection_kinds();
    k.insert(k.end(), {event_kind::kLifecycleRollback, event_kind::kLifecycleAbort, event_kind::kLifecycleRestart});
    return k;
  }();
  return kinds;
}

bool is_detection_kind(const std::string& kind) {
  return contains(detection_kinds(), kind);
}

std::string bounded_trigger_kind(const std::string& kind) {
  return contains(trigger_kinds(), kind) ? kind : kOtherKind;
}

Consequence consequence_of_action(const std::string& action) {
  if (action == event_action::kRollback) return Consequence::kRollback;
  if (action == event_action::kAbort) return Consequence::kAbort;
  if (action == event_action::kRemedyRestart) return Consequence::kRestart;
  return Consequence::kNone;
}

Consequence consequence_of_lifecycle_kind(const std::string& kind) {
  if (kind == event_kind::kLifecycleRollback) return Consequence::kRollback;
  if (kind == event_kind::kLifecycleAbort) return Consequence::kAbort;
  if (kind == event_kind::kLifecycleRestart) return Consequence::kRestart;
  return Consequence::kNone;
}

}  // namespace keel::coord
