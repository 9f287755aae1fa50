// StabilityMonitor: the one object the trainer talks to. It keeps a run healthy by itself:
// detects gradient-norm explosions, loss spikes and non-finite values, skips poisoned updates,
// orders rollbacks to the last good checkpoint, and records why (StabilityEvent).
//
// Per step, AFTER gradient reduction and BEFORE the optimizer step:
//   MonitorDecision d = monitor.observe({step, loss, grad_norm, grads_finite, ...});
//   kApply          -> clip with threshold * d.clip_scale, step the optimizer with
//                      lr * monitor.lr_multiplier(step)
//   kSkipUpdate     -> zero the gradients, do not step the optimizer
//   kRollback       -> restore checkpoint d.rollback_to_step, discard d.skip_batches batches from
//                      its data position, then call on_rollback_done(d.rollback_to_step, step)
//                      and continue with step d.rollback_to_step
//   kRemedyRestart  -> restart from step 0 with a remedy (scaled embeddings, lower LR): either on
//                      this monitor (on_rollback_done(0, step); it allows one remedy restart) or
//                      as a fresh run that must itself forbid another. d.abort_message says why.
//   kAbort          -> log d.abort_message and exit with kAbortExitCode
// After saving a checkpoint: on_checkpoint_saved(step); after retention deletes one:
// on_checkpoint_deleted(step); before deleting, keep protected_checkpoints(). Steps follow the
// trainer's convention (stability_config.h): checkpoint C = the state after C completed steps.
//
// Save state_to_json() with the trainer state and restore it with state_from_json() on resume;
// the resumed monitor then reaches bit-identical decisions. The state saved with checkpoint C
// predates on_checkpoint_saved(C), so after restoring it call on_checkpoint_saved(C) again (as
// the uninterrupted run did) to keep C a rollback target. Signals must be identical on every rank
// (already reduced), so every rank reaches the same decision; compare verdict_hash(step) across
// ranks to prove it. Not thread-safe. Torch-free.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "stability/checkpoint_tracker.h"
#include "stability/detectors.h"
#include "stability/policy.h"
#include "stability/rolling_stats.h"
#include "stability/stability_config.h"
#include "stability/stability_event.h"

namespace keel {

// One step's already-reduced signals.
struct StepSignals {
  int64_t step = 0;
  double loss = 0;
  double grad_norm = 0;  // global norm before clipping
  bool grads_finite = true;
  std::vector<double> layer_grad_norms;  // optional, for evidence and non-finite checks
  double update_ratio = 0;               // optional (0 = not measured)
};

struct MonitorDecision {
  Action action = Action::kApply;
  double clip_scale = 1;          // multiply the gradient-clipping threshold by this
  int64_t rollback_to_step = -1;  // checkpoint to restore (kRollback)
  int64_t onset_step = -1;        // first anomalous step of the episode
  int64_t skip_batches = 0;       // batches to discard after restoring (kRollback)
  std::vector<StabilityEvent> events;  // one per detection (and "recovered"); never empty
                                       // unless the action is kApply
  std::string abort_message;           // evidence and what to try (kAbort, kRemedyRestart)
};

class StabilityMonitor {
 public:
  // Exit code of a run aborted by the monitor: distinct from success (0), generic failure (1)
  // and config errors (2), so schedulers and scripts can tell "the run was unstable" apart.
  static constexpr int kAbortExitCode = kStabilityAbortExitCode;
  // Number of recent raw values carried as evidence in events.
  static constexpr size_t kEvidenceWindow = 32;

  // Validates the config (throws ConfigError naming the key).
  explicit StabilityMonitor(const StabilityConfig& config);

  MonitorDecision observe(const StepSignals& signals);

  void on_checkpoint_saved(int64_t step);
  void on_checkpoint_deleted(int64_t step);
  // The trainer restored `restored_step` (0 after a remedy restart from scratch) following the
  // rollback ordered at `current_step`. The baselines go back to what they were when that
  // checkpoint was saved (a snapshot is kept for each checkpoint that can still be a target;
  // without one, the values of steps >= the restored step are dropped and a baseline left too
  // small re-warms before z-verdicts resume). Clears the evidence windows and the sustained-spike
  // run, returns to healthy, and starts the LR cooldown (not after a remedy restart). The
  // rollback count persists.
  void on_rollback_done(int64_t restored_step, int64_t current_step);

  // LR multiplier for `step`: ramps linearly from lr_cooldown_factor at the restored step (the
  // first step trained after a rollback) to 1 at restored + lr_cooldown_steps; 1 otherwise.
  double lr_multiplier(int64_t step) const;
  // Checkpoints keep-last-K retention must not delete.
  std::set<int64_t> protected_checkpoints() const;
  // FNV-1a hash of the full monitor state and of the last decision (call right after
  // observe(step)); equal on all ranks iff they agree.
  uint64_t verdict_hash(int64_t step) const;

  nlohmann::json state_to_json() const;
  void state_from_json(const nlohmann::json& state);

  MonitorState state() const { return policy_.state(); }
  const StabilityConfig& config() const { return config_; }
  const GoodCheckpointTracker& tracker() const { return tracker_; }
  const StabilityPolicy& policy() const { return policy_; }
  const LossSpikeDetector& loss_detector() const { return loss_; }
  const GradNormExplosionDetector& grad_detector() const { return grad_; }

 private:
  struct HealthySample {
    int64_t step;
    double loss;
    double grad_norm;
  };
  // The last decision, for verdict_hash and for repeating an abort.
  struct LastVerdict {
    int64_t step = -1;
    Action action = Action::kApply;
    double clip_scale = 1;
    int64_t rollback_to_step = -1;
    int64_t onset_step = -1;
    int64_t skip_batches = 0;
  };

  void learn(const StepSignals& signals);
  void rebuild_baselines();
  void prune_snapshots();
  StabilityEvent make_event(const Detection& d, const MonitorDecision& decision,
                            const std::string& policy_reason) const;
  std::string abort_message(Action action, const StepSignals& signals,
                            const std::vector<Detection>& anomalies,
                            const std::string& policy_reason) const;
  MonitorDecision remember(MonitorDecision decision, int64_t step);

  StabilityConfig config_;
  NonFiniteDetector nonfinite_;
  GradNormExplosionDetector grad_;
  LossSpikeDetector loss_;
  UpdateRatioDetector update_ratio_;
  StabilityPolicy policy_;
  GoodCheckpointTracker tracker_;

  std::deque<HealthySample> history_;  // the baselines' contents, with steps (for rollbacks)
  // history_ as it was when each still-relevant checkpoint was saved (the newest good one and
  // newer): restored with that checkpoint on rollback.
  std::map<int64_t, std::deque<HealthySample>> snapshots_;
  RollingWindow loss_evidence_{kEvidenceWindow};
  RollingWindow grad_evidence_{kEvidenceWindow};
  int64_t tick_ = 0;              // executed steps, monotonic across rollbacks
  int64_t cooldown_start_ = -1;   // first step of the current LR cooldown (-1 = none)
  Action pending_ = Action::kApply;  // kRollback / kRemedyRestart awaiting on_rollback_done
  std::string abort_message_;
  LastVerdict last_;
};

}  // namespace keel
