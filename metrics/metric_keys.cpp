// Parsing of worker value keys and event words (see metrics_keys.h). Hand-written prefix matching
// rather than std::regex: a diagnostics step carries a few hundred keys and this runs on the gRPC
// handler's thread.
#include "metrics/metric_keys.h"

#include <algorithm>
#include <map>

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
      {"loss", ValueMetric::kLoss},
      {"val_loss", ValueMetric::kValLoss},
      {"grad_norm", ValueMetric::kGradNorm},
      {"lr", ValueMetric::kLearningRate},
      {"tokens_per_second", ValueMetric::kTokensPerSecond},
      {"mfu", ValueMetric::kMfu},
      {"step_time_seconds", ValueMetric::kStepTime},
      {"skipped", ValueMetric::kSkipped},
      {"update_ratio", ValueMetric::kUpdateRatio},
      {"tokens_seen", ValueMetric::kTokensSeen},
      {"gpu_memory_bytes", ValueMetric::kGpuMemory},
      {"checkpoint_save_seconds", ValueMetric::kCheckpointSaveSeconds},
      {"checkpoint_bytes", ValueMetric::kCheckpointBytes},
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
  if (consume(key, pos, "layer_grad_norm.")) return parse_layer_grad_norm(key, pos);
  if (consume(key, pos, "diag.layer")) return parse_layer_diagnostic(key, pos);
  return {};
}

const std::vector<std::string>& detection_kinds() {
  static const std::vector<std::string> kinds = {"nonfinite", "grad_explosion", "loss_spike",
                                                 "sustained_spike", "update_ratio"};
  return kinds;
}

const std::vector<std::string>& trigger_kinds() {
  static const std::vector<std::string> kinds = [] {
    std::vector<std::string> k = detection_kinds();
    k.insert(k.end(), {"rollback", "abort", "restart"});
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
  if (action == "rollback") return Consequence::kRollback;
  if (action == "abort") return Consequence::kAbort;
  if (action == "remedy_restart") return Consequence::kRestart;
  return Consequence::kNone;
}

Consequence consequence_of_lifecycle_kind(const std::string& kind) {
  if (kind == "rollback") return Consequence::kRollback;
  if (kind == "abort") return Consequence::kAbort;
  if (kind == "restart") return Consequence::kRestart;
  return Consequence::kNone;
}

}  // namespace keel::coord
