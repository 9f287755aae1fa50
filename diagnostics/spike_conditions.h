// The "Spike No More" start-up check (Takase et al., arXiv 2312.16903) on a built model.
// The paper's argument: with pre-LN, gradient spikes are avoided when the embedding output entering
// the first layer has a standard deviation near 1 and the sublayer weights are small. Vanilla GPT-2
// init (N(0, 0.02) embeddings, no scaling) gives an embedding std far below 1, so Keel reports the
// numbers and warns. Uses LibTorch (it runs the embedding on a probe batch).
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/gpt.h"

namespace keel {

struct SpikeConditionReport {
  double embedding_output_std = 0;   // std of what enters block 0, on the probe batch
  std::vector<std::pair<std::string, double>> sublayer_weight_std;  // per sublayer weight matrix
  double max_sublayer_weight_std = 0;
  std::string norm = "pre_ln";       // model.norm: the condition is stated for pre-LN
  bool warn = false;
  std::string warning;

  // The embedding std counts as near 1 within [kNearOneLow, kNearOneHigh]; below kNearOneLow a
  // pre-LN model gets the warning.
  static constexpr double kNearOneLow = 0.5, kNearOneHigh = 2.0;
  // One line per figure, each with its verdict ("... far below 1: the condition does not hold").

  std::vector<std::string> lines() const;
  nlohmann::json to_json() const;
};

// `probe_tokens`: (B, T) int64 on the model's device.
SpikeConditionReport check_spike_conditions(GptImpl& model, const torch::Tensor& probe_tokens);

}  // namespace keel
