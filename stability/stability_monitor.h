// StabilityMonitor: the one object the trainer talks to. It keeps a run healthy by itself:
// detects gradient-norm explosions, loss spikes, update-ratio jumps, non-finite values and runs
// that never learn, skips poisoned updates, orders rollbacks to the last good checkpoint (each
// retry gentler than the last, and a lower LR once the cause is diagnosed as the setting: after
// a failure with nothing good to go back to, x restart_lr_backoff of the LR that failed; for a
// model without normalisation whose failure returns after an LR cut, no more cuts), and
// records why (StabilityEvent), with the data position of every event.
//
// Per step, AFTER gradient reduction and BEFORE the optimizer step:
//   MonitorDecision d = monitor.observe({step, loss, grad_norm, grads_finite, data, ...});
//   kApply          -> clip with threshold * d.clip_scale (and at most d.clip_norm when > 0),
//                      step the optimizer with lr * monitor.lr_multiplier(step)
//   kSkipUpdate     -> zero the gradients, do not step the optimizer
//   kRollback       -> restore checkpoint d.rollback_to_step (0 with d.restart_from_initial: the
//                      initial state, rebuilt from the seed), continue the data at d.resume_data
//                      when known (else discard d.skip_batches batches from the checkpoint's
//                      position), then call on_rollback_done(d.rollback_to_step, step) and
//                      continue with step d.rollback_to_step
//   kRemedyRestart  -> restart from step 0 with the remedy of stability/remedy_recipe.h (scaled
//                      embeddings, small init, LR x d.lr_scale; LayerNorm for a model without
//                      normalisation, whose d.lr_scale is then 1) as a fresh run that must itself
//                      forbid another. d.abort_message says why.
//   kAbort          -> log d.abort_message and exit with kExitStabilityAbort (common/exit_codes.h)
// After saving a checkpoint: on_checkpoint_saved(step); after retention deletes one:
// on_checkpoint_deleted(step); before deleting, keep protected_checkpoints(). A fresh run that
// can rebuild its initial state calls on_initial_state() before step 0 (step 0 then is a
// rollback target). After each evaluation: observe_validation(step, val_loss). Steps follow the
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
#include <optional>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "stability/checkpoint_tracker.h"
#include "stability/detectors.h"
#include "stability/lr_probe.h"
#include "stability/policy.h"
#include "stability/progress_detector.h"
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
  double update_ratio = 0;               // of the previous applied update; 0 = not measured
  DataPosition data;                     // optional: where the step's batch came from
};

struct MonitorDecision {
  Action action = Action::kApply;
  double clip_scale = 1;          // multiply the gradient-clipping threshold by this
  int64_t rollback_to_step = -1;  // checkpoint to restore (kRollback)
  int64_t onset_step = -1;        // first anomalous step of the episode
  int64_t skip_batches = 0;       // batches to discard after restoring (kRollback, no resume_data)
  DataPosition resume_data;       // kRollback: continue right after the onset step's data
  bool restart_from_initial = false;  // kRollback to step 0: the initial state, not a saved checkpoint
  double clip_norm = 0;           // clip_only: clip the global grad norm to this too (0 = no limit)
  double lr_scale = 1;            // the persistent LR multiplier after this decision (kRemedyRestart:
                                  // the child run's LR factor)
  std::vector<StabilityEvent> events;  // one per detection (and "recovered", warnings); never
                                       // empty unless the action is kApply
  std::string abort_message;           // evidence and what to try (kAbort, kRemedyRestart)
  std::string baseline_shift;          // a level shift the baselines followed (not an event), or ""
  // One line for the terminal: what the monitor did (rollbacks, restarts, LR changes), or "".
  std::string summary;
};

class StabilityMonitor {
 public:
  // Number of recent raw values carried as evidence in events.
  static constexpr size_t kEvidenceWindow = 32;
  // Data positions kept for the latest steps (an episode onset is always among them).
  static constexpr size_t kPositionHistory = 256;

  // Validates the config (throws ConfigError naming the key). `facts` resolves the token-based
  // keys (StabilityConfig::resolved) and enables the checks that need the data or the vocabulary.
  explicit StabilityMonitor(const StabilityConfig& config, const RunFacts& facts = {});

  MonitorDecision observe(const StepSignals& signals);
  // An evaluation after `step` completed steps; returns warning events (val_rising), if any.
  std::vector<StabilityEvent> observe_validation(int64_t step, double val_loss);
  // Step 0 (the initial state) can be rebuilt: make it a rollback target.
  void on_initial_state();

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

  // LR multiplier for `step`: the persistent scale (lower after an "LR too high" diagnosis) times
  // the cooldown, which ramps linearly from lr_cooldown_factor^k at the restored step (the first
  // step trained after rollback k) to 1 over k x lr_cooldown_steps steps, times the warm-up a
  // restart from the initial state added: with it the LR rises linearly over
  // restart_warmup_steps() steps from step 0 instead of over the schedule's train.warmup_steps
  // (RunFacts::lr_warmup_steps; the multiplier is the ratio of the two ramps).
  double lr_multiplier(int64_t step) const;
  // The warm-up (steps from step 0) a restart from the initial state imposed; 0 = none.
  int64_t restart_warmup_steps() const { return restart_warmup_steps_; }
  // Clip-threshold multiplier of the cooldown after rollback k: suspect_clip_scale^(k-1).
  double cooldown_clip_scale(int64_t step) const;
  double lr_scale() const { return lr_scale_; }
  // Checkpoints keep-last-K retention must not delete.
  std::set<int64_t> protected_checkpoints() const;
  // FNV-1a hash of the full monitor state and of the last decision (call right after
  // observe(step)); equal on all ranks iff they agree.
  uint64_t verdict_hash(int64_t step) const;

  nlohmann::json state_to_json() const;
  void state_from_json(const nlohmann::json& state);

  MonitorState state() const { return policy_.state(); }
  const StabilityConfig& config() const { return config_; }
  const RunFacts& facts() const { return facts_; }
  const ProgressDetector& progress_detector() const { return progress_; }
  const GoodCheckpointTracker& tracker() const { return tracker_; }
  const StabilityPolicy& policy() const { return policy_; }
  const LossSpikeDetector& loss_detector() const { return loss_; }
  const GradNormExplosionDetector& grad_detector() const { return grad_; }

 private:
  struct HealthySample {
    int64_t step;
    double loss;
    double grad_norm;
    double update_ratio;
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
  void remember_position(int64_t step, const DataPosition& data);
  // Rollback bookkeeping of a kRollback decision: target, data to skip, escalation, diagnosis.
  // An "LR too high" diagnosis is appended to `anomalies` (it is reported with the rollback).
  // The newest good checkpoint before the onset, else the tracker's fallback, else the initial
  // state when the run has one.
  std::optional<int64_t> target_before(int64_t onset) const;
  void plan_rollback(MonitorDecision& decision, const StepSignals& signals, bool restart, std::string& reason,
                     std::vector<Detection>& anomalies);
  // The LR in effect at `step` as a fraction of the peak (train.lr): the schedule's linear warm-up
  // times lr_multiplier(step); the schedule's decay after the warm-up is not counted.
  double lr_fraction_at(int64_t step) const;
  // The warm-up a restart from the initial state trains with, after a try that warmed up over
  // `failed_warmup` steps (see StabilityConfig::restart_warmup_fraction).
  int64_t restart_warmup_after(int64_t failed_warmup) const;
  // 2 / (1 - beta2) steps, the "untuned" warm-up of Adam (Ma & Yarats 2019); 0 = beta2 unknown.
  int64_t untuned_warmup_steps() const;
  // Steps of the LR range test after an early failure (0 = none: the fixed cut).
  int64_t lr_probe_steps() const;
  // A step of the LR range test: measured, never judged; its end orders the restart at the LR
  // it chose.
  MonitorDecision observe_probe(const StepSignals& signals, const Detection& nonfinite);
  // The schedule's warm-up fraction at `step` (1 after the warm-up).
  double scheduled_warmup_fraction(int64_t step) const;
  // Why another rollback cannot help ("" = it may): a model without normalisation whose failure
  // came back although the LR was already cut.
  std::string rollbacks_futile() const;
  void prune_snapshots();
  StabilityEvent make_event(const Detection& d, const MonitorDecision& decision,
                            const std::string& policy_reason) const;
  std::string abort_message(Action action, const StepSignals& signals,
                            const std::vector<Detection>& anomalies,
                            const std::string& policy_reason) const;
  MonitorDecision remember(MonitorDecision decision, int64_t step);

  StabilityConfig config_;
  RunFacts facts_;
  NonFiniteDetector nonfinite_;
  GradNormExplosionDetector grad_;
  LossSpikeDetector loss_;
  UpdateRatioDetector update_ratio_;
  ProgressDetector progress_;
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
  double cooldown_factor_ = 1;    // its starting LR multiplier (lr_cooldown_factor^k)
  int64_t cooldown_steps_ = 0;    // its length (k x lr_cooldown_steps)
  double cooldown_clip_ = 1;      // clip multiplier during it (suspect_clip_scale^(k-1))
  double lr_scale_ = 1;           // persistent LR multiplier (lr_backoff per diagnosis)
  int64_t restart_warmup_steps_ = 0;  // warm-up from step 0 imposed by a restart (0 = none)
  bool lr_diagnosed_ = false;     // the LR was diagnosed too high at least once
  LearningRateProbe lr_probe_;    // the LR range test of an early failure (once per run)
  bool initial_state_ = false;    // step 0 is a rollback target (on_initial_state)
  // Data positions of the latest steps of this timeline (for resume_data and event evidence).
  std::deque<std::pair<int64_t, DataPosition>> positions_;
  // Steps whose loss was elevated but otherwise clean: the new level if it is a level shift.
  std::deque<HealthySample> elevated_samples_;
  Action pending_ = Action::kApply;  // kRollback / kRemedyRestart awaiting on_rollback_done
  std::string abort_message_;
  LastVerdict last_;
};

}  // namespace keel
