// The stability monitor facade (see stability_monitor.h): runs the detectors on each step, feeds
// the policy, keeps healthy values as baselines, tracks good checkpoints, and turns the policy's
// outcome into a decision with evidence.
#include "stability/stability_monitor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

#include "common/check.h"

namespace keel {
namespace {

const StabilityConfig& validated(const StabilityConfig& config) {
  config.validate();
  return config;
}

}  // namespace

StabilityMonitor::StabilityMonitor(const StabilityConfig& config)
    : config_(validated(config)),
      grad_(config_),
      loss_(config_),
      update_ratio_(config_),
      policy_(config_),
      tracker_(config_.guard_steps) {}

MonitorDecision StabilityMonitor::observe(const StepSignals& s) {
  if (policy_.state() == MonitorState::kAborted) {
    MonitorDecision d;
    d.action = Action::kAbort;
    d.abort_message = abort_message_;
    return d;
  }
  KEEL_CHECK(pending_ == Action::kApply,
             "stability monitor: observe(step " << s.step << ") while a " << to_string(pending_)
                                                << " is pending; call on_rollback_done() first");
  ++tick_;
  loss_evidence_.push(s.loss);
  grad_evidence_.push(s.grad_norm);

  std::vector<Detection> anomalies;
  Detection nonfinite =
      nonfinite_.observe(s.step, s.loss, s.grad_norm, s.grads_finite, s.layer_grad_norms);
  bool elevated = false;
  if (nonfinite.anomaly) {
    anomalies.push_back(nonfinite);
  } else if (config_.enabled) {
    for (const Detection& d : {grad_.observe(s.step, s.grad_norm, s.layer_grad_norms),
                               loss_.observe(s.step, s.loss),
                               update_ratio_.observe(s.step, s.update_ratio)}) {
      if (d.anomaly) anomalies.push_back(d);
    }
    elevated = loss_.elevated();
  }
  for (const Detection& d : anomalies) {
    // The onset (a sustained spike's is earlier) and the step itself: a checkpoint saved inside a
    // sustained stretch must not become good.
    tracker_.on_anomaly(d.onset_step);
    tracker_.on_anomaly(d.step);
  }
  tracker_.advance(s.step);

  MonitorDecision decision;
  PolicyOutcome outcome;
  if (!config_.enabled) {
    // Disabled: no policy, but a non-finite update is still never applied.
    outcome.action = anomalies.empty() ? Action::kApply : Action::kSkipUpdate;
    outcome.reason = anomalies.empty() ? "" : "monitor disabled; non-finite update skipped";
  } else {
    PolicyInput in;
    in.step = s.step;
    in.tick = tick_;
    in.anomalies = anomalies;
    in.can_roll_back = [this](int64_t onset) { return tracker_.rollback_target(onset).has_value(); };
    outcome = policy_.observe(in);
  }
  if (anomalies.empty() && !elevated) learn(s);

  decision.action = outcome.action;
  decision.clip_scale = outcome.clip_scale;
  decision.onset_step = outcome.onset_step;
  if (outcome.action == Action::kRollback) {
    int64_t target = tracker_.rollback_target(outcome.onset_step).value();
    decision.rollback_to_step = target;
    decision.skip_batches = config_.skip_batches_after_rollback >= 0
                                ? config_.skip_batches_after_rollback
                                : outcome.onset_step + 1 - target;
  }
  if (outcome.action == Action::kRollback || outcome.action == Action::kRemedyRestart) {
    pending_ = outcome.action;
  }
  if (outcome.action == Action::kAbort) {
    abort_message_ = abort_message(Action::kAbort, s, anomalies, outcome.reason);
    decision.abort_message = abort_message_;
  } else if (outcome.action == Action::kRemedyRestart) {
    decision.abort_message = abort_message(Action::kRemedyRestart, s, anomalies, outcome.reason);
  }

  for (const Detection& d : anomalies) decision.events.push_back(make_event(d, decision, outcome.reason));
  if (outcome.recovered) {
    Detection d;
    d.kind = "recovered";
    d.step = s.step;
    d.onset_step = outcome.onset_step;
    d.value = s.loss;
    decision.events.push_back(make_event(d, decision, outcome.reason));
  }
  // The trainer writes the events to the run's log; here they only go to the debug log.
  for (const StabilityEvent& e : decision.events) {
    spdlog::debug("stability: step {} {} -> {}: {}", e.step, e.kind, e.action, e.reason);
  }
  return remember(std::move(decision), s.step);
}

void StabilityMonitor::learn(const StepSignals& s) {
  if (s.step < baseline_start_step(config_)) return;
  grad_.learn(s.step, s.grad_norm);
  loss_.learn(s.step, s.loss);
  history_.push_back({s.step, s.loss, s.grad_norm});
  while (history_.size() > static_cast<size_t>(config_.window)) history_.pop_front();
}

void StabilityMonitor::rebuild_baselines() {
  std::vector<double> losses, grad_norms;
  for (const HealthySample& h : history_) {
    losses.push_back(h.loss);
    grad_norms.push_back(h.grad_norm);
  }
  loss_.rebuild(losses);
  grad_.rebuild(grad_norms);
}

MonitorDecision StabilityMonitor::remember(MonitorDecision d, int64_t step) {
  last_ = {step, d.action, d.clip_scale, d.rollback_to_step, d.onset_step, d.skip_batches};
  return d;
}

StabilityEvent StabilityMonitor::make_event(const Detection& d, const MonitorDecision& decision,
                                            const std::string& policy_reason) const {
  StabilityEvent e;
  e.kind = d.kind;
  e.step = d.step;
  e.action = to_string(decision.action);
  e.loss_window = loss_evidence_.values();
  e.grad_norm_window = grad_evidence_.values();
  e.reason = d.reason.empty() ? policy_reason
             : policy_reason.empty() ? d.reason
                                     : d.reason + "; " + policy_reason;
  e.checkpoint_step = decision.rollback_to_step;
  e.onset_step = d.kind == "recovered" ? d.onset_step : decision.onset_step;
  e.value = d.value;
  e.baseline = d.baseline;
  e.z = d.z;
  return e;
}

std::string StabilityMonitor::abort_message(Action action, const StepSignals& s,
                                            const std::vector<Detection>& anomalies,
                                            const std::string& policy_reason) const {
  AbortReportInput in;
  in.action = action;
  in.step = s.step;
  in.policy_reason = policy_reason;
  in.anomalies = anomalies;
  in.rollbacks = policy_.rollback_history();
  in.rollbacks_in_window = policy_.rollbacks_in_window(tick_);
  in.max_rollbacks = config_.max_rollbacks;
  in.rollback_window_steps = config_.rollback_window_steps;
  in.recent_loss = loss_evidence_.values();
  in.recent_grad_norm = grad_evidence_.values();
  std::set<int64_t> keep = tracker_.protected_steps();
  if (!keep.empty()) in.last_good_checkpoint = *keep.rbegin();
  return abort_report(in);
}

void StabilityMonitor::on_checkpoint_saved(int64_t step) {
  tracker_.on_checkpoint(step);
  snapshots_[step] = history_;
  prune_snapshots();
}

void StabilityMonitor::on_checkpoint_deleted(int64_t step) {
  tracker_.on_checkpoint_removed(step);
  prune_snapshots();
}

void StabilityMonitor::prune_snapshots() {
  // Rollbacks go to the newest good checkpoint or a newer fallback; older snapshots are dead
  // weight in the saved state (a rollback without a snapshot still works, see the header).
  std::set<int64_t> keep = tracker_.protected_steps();
  int64_t oldest = keep.empty() ? INT64_MIN : *keep.begin();
  for (auto it = snapshots_.begin(); it != snapshots_.end();) {
    bool dead = it->first < oldest || tracker_.checkpoints().count(it->first) == 0;
    it = dead ? snapshots_.erase(it) : std::next(it);
  }
}

void StabilityMonitor::on_rollback_done(int64_t restored_step, int64_t current_step) {
  KEEL_CHECK(pending_ == Action::kRollback || pending_ == Action::kRemedyRestart,
             "stability monitor: on_rollback_done(" << restored_step << ", " << current_step
                                                    << ") but no rollback is pending");
  KEEL_CHECK(restored_step <= current_step, "stability monitor: restored step "
                                                << restored_step << " is after the current step "
                                                << current_step);
  tracker_.on_rollback(restored_step);
  auto snapshot = snapshots_.find(restored_step);
  if (snapshot != snapshots_.end()) history_ = snapshot->second;
  while (!history_.empty() && history_.back().step >= restored_step) history_.pop_back();
  snapshots_.erase(snapshots_.upper_bound(restored_step), snapshots_.end());
  prune_snapshots();
  rebuild_baselines();
  loss_evidence_.clear();
  grad_evidence_.clear();
  policy_.on_rollback_done();
  if (pending_ == Action::kRollback && config_.lr_cooldown_steps > 0) {
    cooldown_start_ = restored_step;
  } else if (pending_ == Action::kRemedyRestart) {
    cooldown_start_ = -1;
  }
  spdlog::debug("stability: {} done at step {}, resuming from step {} ({} baseline values kept)",
               to_string(pending_), current_step, restored_step, history_.size());
  pending_ = Action::kApply;
}

double StabilityMonitor::lr_multiplier(int64_t step) const {
  if (cooldown_start_ < 0 || config_.lr_cooldown_steps <= 0) return 1.0;
  double t = static_cast<double>(step - cooldown_start_) / static_cast<double>(config_.lr_cooldown_steps);
  t = std::clamp(t, 0.0, 1.0);
  return config_.lr_cooldown_factor + (1.0 - config_.lr_cooldown_factor) * t;
}

std::set<int64_t> StabilityMonitor::protected_checkpoints() const { return tracker_.protected_steps(); }

}  // namespace keel
