// Summaries of a run's model diagnostics (the diag.* values that diagnostics/model_diagnostics.h
// writes into metrics.jsonl, see its flat_metrics()) for `keel compare` and `keel diagnose`: the
// whole-model means (normalised attention entropy, entropic-overload fraction, linearity, MLP
// sparsity) and a per-layer table. Torch-free: works on the flat name -> value map.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "registry/run_registry.h"

namespace keel::registry {

// DiagnosticsConfig's default entropy_overload_threshold (diagnostics/diagnostics_config.h).
constexpr double kDefaultOverloadThreshold = 0.9;

struct LayerDiagnosticsSummary {
  std::vector<double> head_entropy;             // per head, nats
  std::vector<double> head_normalised_entropy;  // per head, 0..1
  double mean_entropy = kNaN;                   // over heads
  double mean_normalised_entropy = kNaN;        // over heads
  int64_t overloaded_heads = 0;                 // heads with normalised entropy > threshold
  double linearity = kNaN;
  double linearity_without_residual = kNaN;
  double mlp_sparsity = kNaN;
  double mlp_exactly_zero = kNaN;
  double attention_output_rms = kNaN;
  double mlp_output_rms = kNaN;
  double attention_max_logit = kNaN;
};

struct DiagnosticsSummary {
  int64_t step = -1;  // the metrics record's step; -1: the run has no diagnostics
  double embedding_output_std = kNaN;
  double overload_fraction = kNaN;        // as recorded (else counted from the heads)
  double mean_entropy = kNaN;             // over all heads of all layers
  double mean_normalised_entropy = kNaN;  // over all heads of all layers
  double mean_linearity = kNaN;           // over layers
  double mean_linearity_without_residual = kNaN;
  double mean_mlp_sparsity = kNaN;  // over layers
  double mean_mlp_exactly_zero = kNaN;
  double max_attention_logit = kNaN;  // over layers
  std::vector<LayerDiagnosticsSummary> layers;  // by layer index (missing layers stay NaN)
  bool empty() const { return step < 0; }
};

// From one step's flat diag.* map; overloaded_heads counts heads above `overload_threshold`.
DiagnosticsSummary summarize_diagnostics(const std::map<std::string, double>& flat, int64_t step,
                                         double overload_threshold = kDefaultOverloadThreshold);
// The last step carrying diagnostics among `values` (file or registry order); empty() if none.
DiagnosticsSummary final_diagnostics(const std::vector<DiagnosticValue>& values,
                                     double overload_threshold = kDefaultOverloadThreshold);
// diagnostics.entropy_overload_threshold of a run's config.yaml; the default when absent.
double overload_threshold_of(const std::string& config_yaml);

// The per-layer table: layer, entropy (nats), normalised, overloaded heads, linearity with and
// without the residual, MLP sparsity and exact zeros, sublayer output RMS.
std::string format_layer_table(const DiagnosticsSummary& summary);
// Per-head normalised entropy: one row per layer, one column per head.
std::string format_head_table(const DiagnosticsSummary& summary);

}  // namespace keel::registry
