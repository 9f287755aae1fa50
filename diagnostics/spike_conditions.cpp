// "Spike No More" start-up check (see spike_conditions.h).
#include "diagnostics/spike_conditions.h"

#include "common/log.h"

namespace keel {

SpikeConditionReport check_spike_conditions(GptImpl& model, const torch::Tensor& probe_tokens) {
  torch::NoGradGuard no_grad;
  SpikeConditionReport report;
  const bool was_training = model.is_training();
  model.eval();
  report.embedding_output_std = model.embed(probe_tokens).to(torch::kDouble).std().item<double>();
  if (was_training) model.train();
  for (const auto& item : model.named_parameters()) {
    const auto& name = item.key();
    if (name.rfind("blocks.", 0) != 0 || item.value().dim() != 2) continue;
    const double std = item.value().to(torch::kDouble).std().item<double>();
    report.sublayer_weight_std.emplace_back(name, std);
    report.max_sublayer_weight_std = std::max(report.max_sublayer_weight_std, std);
  }
  const auto& config = model.config();
  report.norm = config.norm;
  // The paper's analysis is for pre-LN; an embedding std well below 1 there lets the first
  // LayerNorm amplify gradients by about 1/std.
  if (config.norm == "pre_ln" && report.embedding_output_std < SpikeConditionReport::kNearOneLow) {
    report.warn = true;
    report.warning = strprintf(
        "embedding output std %.4f is far below 1 with pre-LN: the conditions of Spike No More do not hold "
        "and loss spikes are likely at high learning rates; the scaled-embed or embed-ln recipe "
        "(model.embed_scale=sqrt_d or model.embed_norm=layernorm, model.init=small) satisfies them",
        report.embedding_output_std);
  }
  return report;
}

std::vector<std::string> SpikeConditionReport::lines() const {
  const double std = embedding_output_std;
  const char* where = std < kNearOneLow ? "far below 1" : std > kNearOneHigh ? "far above 1" : "near 1";
  const bool holds = std >= kNearOneLow && std <= kNearOneHigh;
  const std::string verdict =
      norm == "pre_ln" ? std::string(holds ? "the condition holds" : "the condition does not hold")
                       : "the condition is stated for pre-LN; this model has model.norm=" + norm;
  return {strprintf("embedding output std %.4f: %s, %s", std, where, verdict.c_str()),
          strprintf("largest sublayer weight std %.4f over %zu matrices", max_sublayer_weight_std,
                    sublayer_weight_std.size())};
}

nlohmann::json SpikeConditionReport::to_json() const {
  nlohmann::json weights = nlohmann::json::object();
  for (const auto& [name, std] : sublayer_weight_std) weights[name] = std;
  return {{"embedding_output_std", embedding_output_std},
          {"max_sublayer_weight_std", max_sublayer_weight_std},
          {"sublayer_weight_std", weights},
          {"warn", warn},
          {"warning", warning}};
}

}  // namespace keel
