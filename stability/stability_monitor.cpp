// The stability monitor facade (see stability_monitor.h): runs the detectors on each step, feeds
// the policy, keeps healthy values as baselines, tracks good checkpoints, plans rollbacks (data
// to skip, escalation, LR diagnosis) and turns the policy's outcome into a decision with evidence.
#include "stability/stability_monitor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/check.h"

namespace keel {
namespace {

StabilityConfig validated(const StabilityConfig& config, const RunFacts& facts) {
  config.validate();
  return config.resolved(facts.tokens_per_step);
}

std::string format_factor(double x) {
  std::ostringstream s;
  s.precision(3);
  s << x;
  return s.str();
}

bool corroborates(const Detection& d) {
  return d.anomaly && (d.kind == event_kind::kGradExplosion || d.kind == event_kind::kUpdateRatio);
}

}  // namespace

StabilityMonitor::StabilityMonitor(const StabilityConfig& config, const RunFacts& facts)
    : config_(validated(config, facts)),
      facts_(facts),
      grad_(config_),
      loss_(config_, facts.vocab_size > 0 ? std::log(static_cast<double>(facts.vocab_size)) : 0.0),
      update_ratio_(config_),
      progress_(config_, facts),
      policy_(config_),
      tracker_(config_.guard_steps) {}

void StabilityMonitor::on_initial_state() {
  initial_state_ = true;
  on_checkpoint_saved(0);
}

void StabilityMonitor::remember_position(int64_t step, const DataPosition& data) {
  if (!data.known()) return;
  while (!positions_.empty() && positions_.back().first >= step) positions_.pop_back();
  positions_.emplace_back(step, data);
  while (positions_.size() > kPositionHistory) positions_.pop_front();
}

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
  remember_position(s.step, s.data);

  std::vector<Detection> anomalies, warnings;
  Detection nonfinite =
      nonfinite_.observe(s.step, s.loss, s.grad_norm, s.grads_finite, s.layer_grad_norms);
  if (lr_probe_.active()) return observe_probe(s, nonfinite);
  bool elevated = false;
  Detection flat;
  std::string baseline_shift;
  std::string loss_shift_followed;  // non-empty: this step ended a loss level shift the baselines followed
  if (nonfinite.anomaly) {
    anomalies.push_back(nonfinite);
  } else if (config_.enabled) {
    Detection grad = grad_.observe(s.step, s.grad_norm, s.layer_grad_norms);
    Detection ratio = update_ratio_.observe(s.step, s.update_ratio);
    if (corroborates(grad) || corroborates(ratio)) loss_.corroborate();
    Detection loss = loss_.observe(s.step, s.loss);
    for (const Detection& d : {grad, loss, ratio}) {
      if (d.anomaly) anomalies.push_back(d);
    }
    elevated = loss_.elevated();
    if (loss.kind == event_kind::kLevelShift) {
      // The baselines follow the new level: the stretch's values replace the history.
      baseline_shift = loss.reason;
      loss_shift_followed = loss.reason;
      elevated_samples_.push_back({s.step, s.loss, s.grad_norm, s.update_ratio});
      history_ = elevated_samples_;
      rebuild_baselines();
      elevated_samples_.clear();
    }
    Detection progress = progress_.observe_train(s.step, s.loss);
    if (progress.anomaly) {
      flat = progress;
    } else if (!progress.kind.empty()) {
      warnings.push_back(progress);
    }
  }
  for (const Detection& d : anomalies) {
    // The onset (a sustained spike's is earlier) and the step itself: a checkpoint saved inside a
    // sustained stretch must not become good.
    tracker_.on_anomaly(d.onset_step);
    tracker_.on_anomaly(d.step);
  }
  tracker_.advance(s.step);

  const std::vector<RollbackRecord> rollbacks_before = policy_.rollback_history();
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
    in.can_roll_back = [this](int64_t onset) { return target_before(onset).has_value(); };
    in.rollbacks_futile = rollbacks_futile();
    outcome = policy_.observe(in);
  }
  if (outcome.gradient_shift) {
    // The gradient norm's new level: the episode's norms re-seed its baseline (it re-warms).
    std::vector<double> recent = grad_evidence_.values();
    const size_t keep = std::min<size_t>(recent.size(), static_cast<size_t>(config_.suspect_steps_to_rollback));
    grad_.rebuild(std::vector<double>(recent.end() - static_cast<std::ptrdiff_t>(keep), recent.end()));
    baseline_shift = outcome.reason;
  }
  bool restart = false;
  if (!flat.kind.empty()) {
    const bool acts = config_.mode == "rollback" && config_.on_flat != "warn";
    if (acts && (outcome.action == Action::kApply || outcome.action == Action::kSkipUpdate)) {
      if (config_.on_flat == "restart" && initial_state_) {
        outcome = policy_.order_restart(s.step, tick_,
                                        "the run never learned: restart from the initial state at a lower LR");
        restart = outcome.action == Action::kRollback;
      } else {
        outcome = policy_.abort(std::string("the run never learned (on_flat = ") + config_.on_flat +
                                (initial_state_ ? "" : ", no initial state to restart from") + ")");
      }
      lr_diagnosed_ = true;
      anomalies.push_back(flat);
    } else {
      flat.anomaly = false;
      warnings.push_back(flat);
    }
  }

  // Baselines: healthy steps only (skip_only: every finite step, llm.c's adaptive baseline;
  // clip_only: the clipped norm, as ZClip).
  StepSignals learned = s;
  if (config_.mode == "clip_only" && grad_.ready()) {
    const double clip_norm = grad_.adaptive_clip_norm();
    if (s.grad_norm > clip_norm) {
      decision.clip_norm = clip_norm;
      learned.grad_norm = clip_norm;
    }
  }
  const bool finite = !nonfinite.anomaly;
  if (config_.mode == "skip_only" || config_.mode == "clip_only") {
    if (finite) learn(learned);
  } else if (anomalies.empty() && !elevated && loss_shift_followed.empty()) {
    learn(s);  // (a followed level shift already seeded the baselines with this step)
  }
  if (elevated && anomalies.empty() && baseline_shift.empty()) {
    elevated_samples_.push_back({s.step, s.loss, s.grad_norm, s.update_ratio});
    // They become the history (itself at most a window) when the shift is followed: keep a window.
    while (elevated_samples_.size() > static_cast<size_t>(std::max<int64_t>(1, config_.window)))
      elevated_samples_.pop_front();
  } else if (!elevated) {
    elevated_samples_.clear();
  }

  decision.action = outcome.action;
  decision.clip_scale = outcome.clip_scale;
  decision.onset_step = outcome.onset_step;
  decision.baseline_shift = baseline_shift;
  std::string reason = outcome.reason;
  if (outcome.action == Action::kRollback) plan_rollback(decision, s, restart, reason, anomalies);
  if (outcome.action == Action::kRollback || outcome.action == Action::kRemedyRestart) {
    pending_ = outcome.action;
  }
  const bool norm_missing = !rollbacks_futile().empty() &&
                            (outcome.action == Action::kAbort || outcome.action == Action::kRemedyRestart);
  if (outcome.action == Action::kRemedyRestart) {
    lr_diagnosed_ = true;
    // Without normalisation the child gets it (remedy_recipe.h) and keeps the parent's LR: the LR
    // cuts did not help, the missing normalisation was the cause. Otherwise a lower LR again.
    decision.lr_scale = norm_missing ? 1.0 : lr_scale_ * config_.lr_backoff;
  } else {
    decision.lr_scale = lr_scale_;
  }
  if (outcome.action == Action::kAbort || outcome.action == Action::kRemedyRestart) {
    // The rollbacks of this episode, as they were before a remedy restart reset the budget.
    AbortReportInput report;
    report.action = outcome.action;
    report.step = s.step;
    report.policy_reason = reason;
    report.anomalies = anomalies;
    report.rollbacks = outcome.action == Action::kRemedyRestart ? rollbacks_before : policy_.rollback_history();
    report.rollbacks_in_window = static_cast<int64_t>(report.rollbacks.size());
    report.max_rollbacks = config_.max_rollbacks;
    report.rollback_window_steps = config_.rollback_window_steps;
    report.recent_loss = loss_evidence_.values();
    report.recent_grad_norm = grad_evidence_.values();
    // The newest checkpoint confirmed good (a saved folder: the initial state, step 0, is not one);
    // failing that, the fallback target that retention protects, said to be unconfirmed.
    for (auto it = tracker_.checkpoints().rbegin(); it != tracker_.checkpoints().rend(); ++it) {
      if (*it > 0 && tracker_.is_good(*it)) {
        report.last_good_checkpoint = *it;
        break;
      }
    }
    if (!report.last_good_checkpoint) {
      const std::set<int64_t> keep = tracker_.protected_steps();
      if (!keep.empty() && *keep.rbegin() > 0) {
        report.last_good_checkpoint = *keep.rbegin();
        report.last_good_confirmed = false;
      }
    }
    report.peak_lr = facts_.peak_lr;
    report.lr_scale = lr_scale_;
    report.lr_backoff = config_.lr_backoff;
    report.lr_diagnosed_too_high = lr_diagnosed_ || policy_.rollback_history().size() >= 2 ||
                                   rollbacks_before.size() >= 2;
    report.normalization_missing = norm_missing;
    decision.abort_message = abort_report(report);
    if (outcome.action == Action::kAbort) abort_message_ = decision.abort_message;
  }

  for (const Detection& d : anomalies) {
    StabilityEvent e = make_event(d, decision, d.kind == event_kind::kLrTooHigh ? "" : reason);
    if (d.kind == event_kind::kLrTooHigh) e.action = event_action::kLowerLr;
    decision.events.push_back(e);
  }
  for (const Detection& d : warnings) {
    StabilityEvent e = make_event(d, decision, "");
    e.action = event_action::kWarn;
    decision.events.push_back(e);
  }
  if (outcome.recovered) {
    Detection d;
    d.kind = event_kind::kRecovered;
    d.step = s.step;
    d.onset_step = outcome.onset_step;
    d.value = s.loss;
    decision.events.push_back(make_event(d, decision, outcome.reason));
  }
  if (config_.mode == "observe" || config_.mode == "clip_only") {
    for (StabilityEvent& e : decision.events) {
      if (e.action != to_string(Action::kApply)) continue;
      e.action = config_.mode == "observe" ? event_action::kObserve
                 : decision.clip_norm > 0  ? event_action::kClip
                                           : event_action::kObserve;
    }
  }
  // The trainer writes the events to the run's log; here they only go to the debug log.
  for (const StabilityEvent& e : decision.events) {
    spdlog::debug("stability: step {} {} -> {}: {}", e.step, e.kind, e.action, e.reason);
  }
  return remember(std::move(decision), s.step);
}

std::optional<int64_t> StabilityMonitor::target_before(int64_t onset) const {
  if (auto target = tracker_.rollback_target(onset)) return target;
  // The initial state is rebuilt from the seed, whatever happened since: the last resort (a
  // restarted run whose new checkpoints all had an anomaly after them would otherwise abort).
  if (initial_state_) return int64_t{0};
  return std::nullopt;
}

void StabilityMonitor::plan_rollback(MonitorDecision& decision, const StepSignals& s, bool restart,
                                     std::string& reason, std::vector<Detection>& anomalies) {
  const int64_t onset = decision.onset_step;
  const int64_t target = restart ? 0 : target_before(onset).value();
  decision.rollback_to_step = target;
  decision.restart_from_initial = initial_state_ && target == 0;
  if (restart) {
    decision.skip_batches = 0;  // the data is not the suspect: the whole run starts again
  } else {
    decision.skip_batches = config_.skip_batches_after_rollback >= 0 ? config_.skip_batches_after_rollback
                                                                     : onset + 1 - target;
    if (config_.skip_batches_after_rollback < 0) {
      for (const auto& [step, data] : positions_) {
        if (step != onset) continue;
        decision.resume_data = data;
        decision.resume_data.epoch = data.next_epoch;
        decision.resume_data.shard = data.next_shard;
        decision.resume_data.offset = data.next_offset;
        decision.resume_data.tokens = 0;
      }
    }
  }
  // The LR in effect at the onset, as a fraction of the peak, read before the escalation below
  // changes the cooldown that lr_multiplier() applies.
  const double onset_fraction = lr_fraction_at(onset);
  // Escalation: rollback k of the window is gentler than rollback k-1.
  const int64_t k = std::max<int64_t>(1, policy_.rollbacks_in_window(tick_));
  cooldown_factor_ = std::pow(config_.lr_cooldown_factor, static_cast<double>(k));
  cooldown_steps_ = config_.lr_cooldown_steps * k;
  cooldown_clip_ = std::pow(config_.suspect_clip_scale, static_cast<double>(k - 1));
  // Diagnosis: a spike that returns after a rollback (the rollback skipped the data it came from)
  // or a failure before anything good existed is the setting: lower the LR for good.
  const bool returned = k >= 2;
  const bool from_scratch = restart || (decision.restart_from_initial && !tracker_.is_good(0));
  std::ostringstream line, lr_story;
  int64_t added_warmup = 0, failed_warmup = 0;
  const bool probe = from_scratch && !restart && facts_.normalized && lr_probe_steps() > 0 &&
                     !lr_probe_.finished() && !lr_probe_.planned();
  if (probe) {
    // Measure instead of guessing (lr_probe.h): the restarted run first ramps the LR up to the
    // one that failed, then restarts once more at the LR the range test chose. The probe is the
    // whole remedy of this rollback: no cooldown, no tighter clipping, no added warm-up.
    const double failed = std::min(lr_scale_, onset_fraction);
    lr_probe_.plan(failed, lr_probe_steps(), config_.lr_probe_span_decades, config_.lr_probe_divisor,
                   config_.lr_probe_divergence);
    cooldown_factor_ = 1;
    cooldown_steps_ = 0;
    cooldown_clip_ = 1;
    lr_story << "an LR range test of " << lr_probe_steps() << " steps from the initial state (LR x"
             << format_factor(lr_probe_.fraction_at(0)) << " -> x" << format_factor(failed)
             << " of the peak, the LR in effect at the onset) measures the new one";
  } else if (from_scratch) {
    // The LR that failed: the one in effect at the onset (lower than the peak during a warm-up),
    // read before anything below changes the multiplier. A run that never learned failed at the
    // LR it trained at all along (its "onset" is step 0).
    const double failed = restart ? lr_scale_ : onset_fraction;
    const double floor = lr_scale_ * config_.restart_lr_backoff;
    const double reference = std::max(std::min(lr_scale_, failed), floor);
    lr_scale_ = reference * config_.restart_lr_backoff;
    lr_story << "x" << format_factor(config_.restart_lr_backoff) << " the LR in effect at the onset";
    if (failed < floor) {
      lr_story << " (x" << format_factor(failed) << " of the peak, counted as x" << format_factor(floor)
               << ": at most two cuts at once)";
    } else if (failed < reference + 1e-12 && failed < 1.0) {
      lr_story << " (x" << format_factor(failed) << " of the peak, in a warm-up or cooldown)";
    }
    // The classic cause of an early failure, a short warm-up: the restarted run warms up longer.
    failed_warmup = std::max(facts_.lr_warmup_steps, restart_warmup_steps_);
    const int64_t warmup = restart_warmup_after(failed_warmup);
    if (warmup > failed_warmup) {
      // On top of the cooldown of rollback k (measured: without it, the restarted runs of the CPU
      // bench trained at an LR still too high, 2026-12-07): the LR rises from 0 over the warm-up,
      // then on to the new peak as the cooldown ends.
      added_warmup = warmup;
      restart_warmup_steps_ = warmup;
    }
  } else if (returned) {
    lr_scale_ *= config_.lr_backoff;
    lr_story << "x" << format_factor(config_.lr_backoff);
  }
  if (returned || from_scratch) {
    lr_diagnosed_ = true;
    Detection d;
    d.anomaly = true;
    d.kind = event_kind::kLrTooHigh;
    d.step = s.step;
    d.onset_step = onset;
    d.value = lr_scale_;
    std::ostringstream why;
    if (restart) {
      why << "the run never learned from its initial state";
    } else if (returned) {
      why << "the failure returned (rollback " << k << " within " << config_.rollback_window_steps
          << " steps) on data the previous rollback did not replay";
    } else {
      why << "the run failed before any checkpoint was confirmed good";
    }
    why << ": the learning rate is too high; ";
    if (probe) {
      why << lr_story.str();
    } else {
      why << "from now on it is x" << format_factor(lr_scale_);
      if (facts_.peak_lr > 0) why << " (peak " << facts_.peak_lr * lr_scale_ << ")";
      why << ", " << lr_story.str();
    }
    if (added_warmup > 0) {
      why << "; the restarted run warms up over " << added_warmup << " steps (the failed try: " << failed_warmup
          << ")";
    }
    d.reason = why.str();
    anomalies.push_back(d);
  }
  line << (decision.restart_from_initial ? "restart from the initial state (step 0)"
                                         : "rolled back to checkpoint step " + std::to_string(target))
       << " after step " << s.step << " (onset " << onset << ")";
  if (decision.resume_data.known()) {
    line << "; data continues after the onset's batch (epoch " << decision.resume_data.epoch << ", shard "
         << decision.resume_data.shard << ", offset " << decision.resume_data.offset << ")";
  } else if (decision.skip_batches > 0) {
    line << "; skipping " << decision.skip_batches << " batches";
  }
  if (probe) {
    line << "; an LR range test over the first " << lr_probe_steps() << " steps (LR x"
         << format_factor(lr_probe_.fraction_at(0)) << " rising to x" << format_factor(lr_probe_.fraction_at(lr_probe_steps()))
         << " of the peak), then a restart at the LR it picks";
    decision.summary = line.str();
    return;
  }
  line << "; LR x" << format_factor(lr_scale_ * cooldown_factor_);
  if (cooldown_steps_ > 0 && cooldown_factor_ < 1)
    line << " ramping to x" << format_factor(lr_scale_) << " over " << cooldown_steps_ << " steps";
  if (added_warmup > 0) line << ", warming up from 0 over the first " << added_warmup << " steps";
  if (cooldown_clip_ < 1) line << ", clip x" << format_factor(cooldown_clip_);
  decision.summary = line.str();
}

std::vector<StabilityEvent> StabilityMonitor::observe_validation(int64_t step, double val_loss) {
  std::vector<StabilityEvent> events;
  if (!config_.enabled) return events;
  Detection d = progress_.observe_val(step, val_loss);
  if (d.kind.empty()) return events;
  MonitorDecision none;
  StabilityEvent e = make_event(d, none, "");
  e.action = event_action::kWarn;
  events.push_back(e);
  return events;
}

void StabilityMonitor::learn(const StepSignals& s) {
  if (s.step < baseline_start_step(config_)) return;
  grad_.learn(s.step, s.grad_norm);
  loss_.learn(s.step, s.loss);
  update_ratio_.learn(s.step, s.update_ratio);
  history_.push_back({s.step, s.loss, s.grad_norm, s.update_ratio});
  while (history_.size() > static_cast<size_t>(config_.window)) history_.pop_front();
}

void StabilityMonitor::rebuild_baselines() {
  std::vector<double> losses, grad_norms, ratios;
  for (const HealthySample& h : history_) {
    losses.push_back(h.loss);
    grad_norms.push_back(h.grad_norm);
    ratios.push_back(h.update_ratio);
  }
  loss_.rebuild(losses);
  grad_.rebuild(grad_norms);
  update_ratio_.rebuild(ratios);
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
  e.onset_step = d.kind == event_kind::kRecovered ? d.onset_step : decision.onset_step;
  e.value = d.value;
  e.baseline = d.baseline;
  e.z = d.z;
  for (const auto& [step, data] : positions_) {
    if (step == d.step) e.data = data;
  }
  e.resume_data = decision.resume_data;
  e.lr_scale = decision.lr_scale;
  if (decision.action == Action::kRollback) {
    e.cooldown_factor = cooldown_factor_;
    e.cooldown_steps = cooldown_steps_;
  }
  return e;
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
  elevated_samples_.clear();
  while (!positions_.empty() && positions_.back().first >= restored_step) positions_.pop_back();
  progress_.on_rewind(restored_step);
  policy_.on_rollback_done();
  if (lr_probe_.planned()) lr_probe_.begin();
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
  // The range test sets the LR itself: the multiplier undoes the schedule's warm-up.
  if (lr_probe_.active()) return lr_probe_.fraction_at(step) / scheduled_warmup_fraction(step);
  double m = lr_scale_;
  if (cooldown_start_ >= 0 && cooldown_steps_ > 0) {
    double t = static_cast<double>(step - cooldown_start_) / static_cast<double>(cooldown_steps_);
    t = std::clamp(t, 0.0, 1.0);
    m *= cooldown_factor_ + (1.0 - cooldown_factor_) * t;
  }
  if (restart_warmup_steps_ > 0 && step >= 0 && step < restart_warmup_steps_) {
    // The schedule ramps over lr_warmup_steps; the restarted run must ramp over the longer warm-up.
    const double want = static_cast<double>(step + 1) / static_cast<double>(restart_warmup_steps_);
    m *= std::min(1.0, want / scheduled_warmup_fraction(step));
  }
  return m;
}

double StabilityMonitor::scheduled_warmup_fraction(int64_t step) const {
  return facts_.lr_warmup_steps > 0 && step < facts_.lr_warmup_steps
             ? static_cast<double>(std::max<int64_t>(step, 0) + 1) / static_cast<double>(facts_.lr_warmup_steps)
             : 1.0;
}

double StabilityMonitor::lr_fraction_at(int64_t step) const {
  return scheduled_warmup_fraction(step) * lr_multiplier(step);
}

int64_t StabilityMonitor::lr_probe_steps() const {
  if (config_.lr_probe_steps < 0) return 0;
  if (config_.lr_probe_steps > 0) return config_.lr_probe_steps;
  if (facts_.total_steps <= 0) return 20;
  const auto tenth = static_cast<int64_t>(std::llround(0.1 * static_cast<double>(facts_.total_steps)));
  return std::clamp<int64_t>(tenth, 12, 50);
}

MonitorDecision StabilityMonitor::observe_probe(const StepSignals& s, const Detection& nonfinite) {
  // The range test's steps are a measurement: no detector judges them, their values enter no
  // baseline, and nothing saved during them becomes a good checkpoint.
  tracker_.on_anomaly(s.step);
  tracker_.advance(s.step);
  MonitorDecision decision;
  decision.lr_scale = lr_scale_;
  if (!lr_probe_.observe(s.step, s.loss, !nonfinite.anomaly)) return remember(std::move(decision), s.step);

  const PolicyOutcome outcome = policy_.order_measured_restart("the LR range test ended");
  lr_scale_ = std::min(1.0, lr_probe_.chosen_fraction());
  lr_diagnosed_ = true;
  cooldown_factor_ = 1;
  cooldown_steps_ = 0;
  cooldown_clip_ = 1;
  // The probe reached its LR through a ramp; the run must not jump to it at step 0 either (measured:
  // vanilla at the probe's 1.1e-3 without a warm-up exploded at step 19 on the CPU bench). At least
  // the "untuned" warm-up of Adam, 2 / (1 - beta2) steps (Ma & Yarats 2019), at most
  // restart_warmup_max_fraction of the run; a longer warm-up of the schedule stays.
  int64_t warmup = untuned_warmup_steps();
  if (facts_.total_steps > 0)
    warmup = std::min(warmup, static_cast<int64_t>(config_.restart_warmup_max_fraction *
                                                   static_cast<double>(facts_.total_steps)));
  restart_warmup_steps_ = warmup > facts_.lr_warmup_steps ? warmup : 0;
  decision.action = outcome.action;
  decision.onset_step = 0;
  decision.rollback_to_step = 0;
  decision.restart_from_initial = true;
  decision.skip_batches = 0;  // the probe was a measurement: the run starts over, data included
  decision.lr_scale = lr_scale_;
  pending_ = Action::kRollback;
  Detection d;
  d.anomaly = true;
  d.kind = event_kind::kLrProbe;
  d.step = s.step;
  d.onset_step = 0;
  d.value = lr_scale_;
  d.reason = lr_probe_.report();
  decision.events.push_back(make_event(d, decision, ""));
  std::ostringstream line;
  line << "restart from the initial state (step 0) after the LR range test (step " << s.step << "); LR x"
       << format_factor(lr_scale_) << " of the peak";
  if (facts_.peak_lr > 0) line << " (" << facts_.peak_lr * lr_scale_ << ")";
  line << " from now on";
  if (restart_warmup_steps_ > 0) line << ", warming up from 0 over the first " << restart_warmup_steps_ << " steps";
  decision.summary = line.str();
  return remember(std::move(decision), s.step);
}

int64_t StabilityMonitor::untuned_warmup_steps() const {
  if (!(facts_.adam_beta2 > 0 && facts_.adam_beta2 < 1)) return 0;
  return static_cast<int64_t>(std::ceil(2.0 / (1.0 - facts_.adam_beta2) - 1e-9));
}

int64_t StabilityMonitor::restart_warmup_after(int64_t failed_warmup) const {
  if (config_.restart_warmup_fraction <= 0) return failed_warmup;
  const int64_t total = facts_.total_steps;
  int64_t want = untuned_warmup_steps();
  if (total > 0)
    want = std::max(want, static_cast<int64_t>(std::ceil(config_.restart_warmup_fraction * static_cast<double>(total))));
  // A further restart: twice the warm-up the monitor added last time.
  if (restart_warmup_steps_ > 0) want = std::max(want, 2 * restart_warmup_steps_);
  if (total > 0)
    want = std::min(want, static_cast<int64_t>(config_.restart_warmup_max_fraction * static_cast<double>(total)));
  return std::max(failed_warmup, want);
}

std::string StabilityMonitor::rollbacks_futile() const {
  if (facts_.normalized || !lr_diagnosed_ || lr_scale_ >= 1.0) return "";
  std::ostringstream why;
  why << "the failure returned although the LR was already cut to x" << format_factor(lr_scale_)
      << ", in a model without normalisation layers (model.norm = none): a lower LR only delays it";
  return why.str();
}

double StabilityMonitor::cooldown_clip_scale(int64_t step) const {
  if (cooldown_start_ < 0 || step >= cooldown_start_ + cooldown_steps_) return 1.0;
  return cooldown_clip_;
}

std::set<int64_t> StabilityMonitor::protected_checkpoints() const { return tracker_.protected_steps(); }

}  // namespace keel
