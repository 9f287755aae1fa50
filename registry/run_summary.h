// Run summaries for `keel runs` / `keel compare`: losses, stability event counts, throughput and
// wall time of a run (from its directory or its registry rows), its last model diagnostics, and the
// config keys in which a set of runs differ. Torch-free.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "registry/diagnostics_summary.h"
#include "registry/run_registry.h"

namespace keel::registry {

struct RunSummary {
  std::string run_dir;  // as given (or the registry id)
  std::string name;     // the directory's base name
  std::string recipe, status, parent, config_yaml;
  int64_t steps = 0;        // the run's step count: final_step (else its distinct steps)
  int64_t replayed_steps = -1;  // steps run again after a rollback; -1: unknown (downsampled registry rows)
  int64_t final_step = -1;  // run_info.json's final_step (else last metrics step + 1)
  double final_val_loss = kNaN;
  double best_val_loss = kNaN;
  double max_grad_norm = kNaN;           // over finite grad norms
  double tokens_per_second = kNaN;  // metrics/throughput.h's definition (RunRecord); NaN: none timed
  double wall_seconds = kNaN;            // run_info.json's (else the sum of step times)
  int64_t events = 0;
  int64_t loss_spikes = 0;      // kinds loss_spike + sustained_spike
  int64_t grad_explosions = 0;  // kind grad_explosion
  int64_t nonfinite = 0;        // kind nonfinite
  int64_t skips = 0;            // action skip_update
  int64_t rollbacks = 0;        // rollbacks: one per rollback, however many detectors called for it
  std::map<std::string, int64_t> events_by_kind, events_by_action;
  DiagnosticsSummary diagnostics;  // of the last step that computed them; empty() when none
};

RunSummary summarize(const RunData& data);
RunSummary summarize_run_dir(const std::string& run_dir);
// From registry rows (metrics there are downsampled: steps counts the stored rows). Throws when
// the run is not in the registry.
RunSummary summarize_registry_run(const RunRegistry& registry, const std::string& id);

// config.yaml flattened to "section.key" -> value (nested maps joined with '.', sequences written
// in YAML flow style). Throws KeelError on invalid YAML.
std::map<std::string, std::string> flatten_config(const std::string& yaml_text);

struct ConfigDifference {
  std::string key;                  // section.key
  std::vector<std::string> values;  // one per run, "(absent)" where the run lacks the key
};
// The flattened keys whose values are not the same in every run (numbers compare by value, so
// 0.1 and 0.10000000000000001 are equal), sorted by key.
std::vector<ConfigDifference> config_differences(const std::vector<std::string>& yaml_texts);
std::vector<ConfigDifference> config_differences(const std::vector<RunSummary>& runs);

// A plain-text table: header, a dashed rule, rows; columns padded to their widest cell
// (numeric-looking cells right-aligned).
std::string format_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);
// Helpers for table cells: "-" for NaN.
std::string format_number(double value, int decimals);
std::string format_duration(double seconds);  // "2m07s", "1h03m", "45.2s"

}  // namespace keel::registry
