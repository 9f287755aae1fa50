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

// Where one step's data came from: the loader's cursor before the step's first batch and after
// its last (epoch, shard index, token offset), how many tokens it read, whether it crossed a
// shard or epoch boundary, and (filled in by the trainer for events only, since it needs a scan
// of the shard) the document the batch starts in and how many document boundaries it holds.
// Plain numbers: the monitor stays free of the data layer.
struct DataPosition {
  int64_t epoch = -1;
  int64_t shard = -1;
  int64_t offset = -1;
  int64_t next_epoch = -1;
  int64_t next_shard = -1;
  int64_t next_offset = -1;
  int64_t tokens = 0;
  bool crossed_shard = false;
  bool crossed_epoch = false;
  int64_t document = -1;
  int64_t documents = 0;
  std::string shard_name;  // events only

  bool known() const { return shard >= 0; }
  nlohmann::json to_json() const;
  static DataPosition from_json(const nlohmann::json& j);
  // "epoch 0, shard 1 (train_001.bin), tokens 1024-2047, document 12 (+3 boundaries), crossed an epoch"
  std::string describe() const;
};

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
  DataPosition data;             // the step's data
  // Rollbacks: where the data continues (the trainer's terminal line and metrics.jsonl's
  // rolled_back_tokens say how much was skipped and discarded), and the LR plan.
  DataPosition resume_data;
  double lr_scale = 1;           // persistent LR multiplier from now on
  double cooldown_factor = 1;    // LR multiplier at the start of the cooldown
  int64_t cooldown_steps = 0;

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
  // false: no checkpoint is confirmed good yet; last_good_checkpoint is the newest one with no
  // anomaly recorded after it (the rollback fallback), not a verified one.
  bool last_good_confirmed = true;
  // The LR story: the run's peak LR (0 = unknown), the persistent multiplier the monitor applied,
  // and whether a spike returned after a rollback / the run never learned (a setting, not data).
  double peak_lr = 0;
  double lr_scale = 1;
  double lr_backoff = 0.3;
  bool lr_diagnosed_too_high = false;
  // The model has no normalisation layers and its failure returned after an LR cut: the advice
  // names the missing normalisation before the LR.
  bool normalization_missing = false;
};

// Multi-line text: the decision and exit code, why, the triggering detections, the rollbacks
// within the window (steps and onsets), recent values, the last good checkpoint, and what to try
// (lower train.lr / longer warm-up, the scaled-embed recipe, tighter clipping, the data).
std::string abort_report(const AbortReportInput& in);

}  // namespace keel
