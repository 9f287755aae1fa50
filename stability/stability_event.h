// The human-readable records of stability decisions: StabilityEvent (what was detected, what the
// monitor did, and the evidence: recent loss and grad-norm values, so a human can see why
// without the raw logs; the trainer writes to_json() to the run's event log) and the abort /
// remedy-restart report (evidence plus what to try next). Torch-free.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "stability/detectors.h"
#include "stability/policy.h"

namespace keel {

struct StabilityEvent {
  // A detection kind ("nonfinite", "grad_explosion", "loss_spike", "sustained_spike",
  // "update_ratio") or "recovered" (suspect -> healthy).
  std::string kind;
  int64_t step = -1;
  std::string action;  // to_string(Action): "skip_update", "rollback", "abort", ...
  // The last values observed (oldest .. newest, up to StabilityMonitor::kEvidenceWindow),
  // including this step's and anomalous ones.
  std::vector<double> loss_window;
  std::vector<double> grad_norm_window;
  std::string reason;
  int64_t checkpoint_step = -1;  // the rollback target, when the action is a rollback
  int64_t onset_step = -1;       // first anomalous step of the episode
  double value = 0;              // the judged value, its baseline and z (see Detection)
  double baseline = 0;
  double z = 0;

  nlohmann::json to_json() const;
};

// "[a, b, c]" with up to `max_values` of the newest values ("..., " before them if cut).
std::string format_values(const std::vector<double>& values, size_t max_values);

// What an abort (or remedy-restart) report is built from.
struct AbortReportInput {
  Action action = Action::kAbort;  // kAbort or kRemedyRestart
  int64_t step = 0;
  std::string policy_reason;
  std::vector<Detection> anomalies;       // this step's
  std::vector<RollbackRecord> rollbacks;  // within the window
  int64_t rollbacks_in_window = 0;
  int64_t max_rollbacks = 0;
  int64_t rollback_window_steps = 0;
  std::vector<double> recent_loss;
  std::vector<double> recent_grad_norm;
  std::optional<int64_t> last_good_checkpoint;
};

// Multi-line text: the decision and exit code, why, the triggering detections, the rollbacks
// within the window (steps and onsets), recent values, the last good checkpoint, and what to try
// (lower train.lr / longer warm-up, the scaled-embed recipe, tighter clipping, the data).
std::string abort_report(const AbortReportInput& in);

}  // namespace keel
