// Diagnostics of "inside the model" on a fixed probe batch: per layer, attention entropy per head
// (and normalised), linearity of the block (with and without the residual), MLP activation
// sparsity and sublayer output RMS norms; globally, the embedding output std and the fraction of
// heads in "entropic overload". Computed without gradients, in eval mode, leaving the model's
// training flag, its parameters and the global CPU RNG untouched. Under tensor parallelism the
// per-head and per-unit measures are combined over the TP group (see compute_diagnostics).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "diagnostics/diagnostics_config.h"
#include "model/gpt.h"

namespace keel {


struct LayerDiagnostics {
  std::vector<double> attention_entropy;             // H, mean row entropy per head (nats)
  std::vector<double> attention_normalised_entropy;  // H, in [0, 1]
  double linearity = 0.0;                            // block input -> block output
  double linearity_without_residual = 0.0;           // block input -> output - input
  double mlp_sparsity = 0.0;                         // fraction |a| < sparsity_threshold
  double mlp_exactly_zero = 0.0;                     // fraction a == 0
  double attention_output_rms = 0.0;                 // RMS of the attention sublayer output
  double mlp_output_rms = 0.0;                       // RMS of the MLP sublayer output
  double attention_max_logit = 0.0;                  // largest q.k/sqrt(D) of any head (0: linear attention)
};

struct DiagnosticsReport {
  std::vector<LayerDiagnostics> layers;  // L
  double embedding_output_std = 0.0;
  double attention_entropy_overload_fraction = 0.0;

  nlohmann::json to_json() const;
  // diag.embedding_output_std, diag.attention_entropy_overload_fraction,
  // diag.layer{l}.head{h}.attention_entropy / .attention_normalised_entropy,
  // diag.layer{l}.linearity / .linearity_without_residual / .mlp_sparsity / .mlp_exactly_zero /
  // .attention_output_rms / .mlp_output_rms / .attention_max_logit
  std::map<std::string, double> flat_metrics() const;
};

// probe_tokens: (B, T) int64 on the model's device. Runs one traced forward pass. With tensor
// parallelism (the model built with a TP communicator) it is collective: every rank of the TP group
// calls it with the same tokens, per-head entropies are gathered in head order and MLP sparsity
// counts summed over the group, so every rank returns the report of the whole model.
DiagnosticsReport compute_diagnostics(GptImpl& model, const torch::Tensor& probe_tokens,
                                      const DiagnosticsConfig& config);

}  // namespace keel
