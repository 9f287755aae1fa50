// The stability policy: a small state machine that turns a step's anomalies into an action.
//
//   healthy --anomaly--> suspect          (that step's update is skipped; while suspect the clip
//                                          threshold is scaled by suspect_clip_scale)
//   suspect --suspect_recover_steps clean steps--> healthy
//   suspect --suspect_steps_to_rollback consecutive anomalous steps--> rollback, unless all of
//             them were gradient norms high against their own baseline with the loss unharmed:
//             then healthy again with a re-seeded gradient baseline (PolicyOutcome.gradient_shift)
//   any     --sustained spike (if rollback_on_sustained), or a loss spike with
//             z > 2 x loss_z_threshold corroborated by another anomaly of the same step
//             (grad explosion, update-ratio jump, non-finite)--> rollback at once
//   any     --order_restart() (a run that never learned)--> rollback to the initial state
//   rollback --(trainer restores a checkpoint; on_rollback_done)--> healthy
//
// A non-finite step is always skipped (it is an anomaly like any other). Rollbacks are counted
// over the last rollback_window_steps *executed* steps ("ticks": replayed steps count too, so a
// rollback's step going backwards neither shrinks nor grows the distance). A rollback that would
// exceed max_rollbacks, or one with no checkpoint to go to, follows on_repeated_spikes:
// "rollback" keeps rolling back (with no target it aborts), "remedy_restart" restarts from
// scratch once if the episode's onset is before remedy_restart_before_step (else aborts), and
// "abort" aborts. So does a rollback the caller says cannot help (PolicyInput::rollbacks_futile).
// Aborted is final.
//
// That is stability.mode = rollback. The other modes never roll back and never leave healthy:
// skip_only skips the update of every step anomalous against its learning baseline (llm.c) and
// of at most suspect_steps_to_rollback consecutive steps judged only by an absolute check (a
// collapsed model must train to leave it); clip_only and observe apply every finite update (the
// monitor clips in clip_only); a non-finite update is skipped in every mode.
// Torch-free.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "stability/detectors.h"
#include "stability/stability_config.h"

namespace keel {

enum class MonitorState { kHealthy, kSuspect, kRollback, kAborted };
enum class Action { kApply, kSkipUpdate, kRollback, kRemedyRestart, kAbort };

// "healthy", "suspect", "rollback", "aborted" / "apply", "skip_update", "rollback",
// "remedy_restart", "abort".
const char* to_string(MonitorState state);
const char* to_string(Action action);

struct PolicyInput {
  int64_t step = 0;
  int64_t tick = 0;  // executed steps so far, monotonic across rollbacks
  std::vector<Detection> anomalies;  // only detections with anomaly = true
  // Whether a checkpoint exists to roll back to for this onset; empty = always.
  std::function<bool(int64_t onset_step)> can_roll_back;
  // Non-empty: why another rollback cannot help (a model without normalisation whose failure
  // returned after an LR cut). An escalation then follows on_repeated_spikes at once, as if the
  // rollbacks were used up (on_repeated_spikes = rollback still rolls back).
  std::string rollbacks_futile;
};

struct PolicyOutcome {
  Action action = Action::kApply;
  MonitorState state = MonitorState::kHealthy;  // state after this step
  double clip_scale = 1.0;
  int64_t onset_step = -1;  // first anomalous step of the episode (-1 when healthy)
  bool recovered = false;   // this step returned suspect -> healthy
  // suspect_steps_to_rollback consecutive gradient-only anomalies (z against the baseline, no
  // ceiling) with no harm to the loss: back to healthy; the caller re-seeds the gradient baseline.
  bool gradient_shift = false;
  std::string reason;       // why (escalations, recoveries, exhausted rollbacks)
};

// One rollback (or remedy restart) the policy ordered.
struct RollbackRecord {
  int64_t tick = 0;
  int64_t step = 0;
  int64_t onset_step = 0;
};

class StabilityPolicy {
 public:
  explicit StabilityPolicy(const StabilityConfig& config);

  PolicyOutcome observe(const PolicyInput& input);
  // A restart from the initial state (step 0) for a run that never learned: counted against the
  // rollback budget like a rollback; past it, on_repeated_spikes decides (as for a spike).
  PolicyOutcome order_restart(int64_t step, int64_t tick, const std::string& why);
  // A restart from the initial state that is a planned measurement's end (the LR range test),
  // not a failure: it uses no rollback of the budget.
  PolicyOutcome order_measured_restart(const std::string& why);
  // Ends the run (a failure no rollback can fix): aborted, final.
  PolicyOutcome abort(const std::string& why);
  // The trainer restored a checkpoint (or restarted): back to healthy; rollback counts persist.
  void on_rollback_done();

  MonitorState state() const { return state_; }
  int64_t episode_onset() const { return episode_onset_; }
  int64_t consecutive_anomalies() const { return consecutive_anomalies_; }
  // Rollbacks within the window ending at `tick`.
  int64_t rollbacks_in_window(int64_t tick) const;
  const std::vector<RollbackRecord>& rollback_history() const { return rollbacks_; }
  int64_t remedy_restarts() const { return remedy_restarts_; }

  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& j);

 private:
  PolicyOutcome escalate(const PolicyInput& input, const std::string& why);
  PolicyOutcome observe_passive(const PolicyInput& input);
  PolicyOutcome outcome(Action action, std::string reason) const;
  void forget_old_rollbacks(int64_t tick);

  StabilityConfig config_;
  MonitorState state_ = MonitorState::kHealthy;
  int64_t consecutive_anomalies_ = 0;
  int64_t clean_steps_ = 0;
  int64_t episode_onset_ = -1;
  int64_t remedy_restarts_ = 0;
  bool episode_harms_ = false;  // the episode had an anomaly other than a relative gradient norm
  std::vector<RollbackRecord> rollbacks_;  // within the window, oldest first
};

}  // namespace keel
