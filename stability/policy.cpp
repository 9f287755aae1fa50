// The healthy/suspect/rollback state machine (see policy.h for the transitions).
#include "stability/policy.h"

#include <algorithm>
#include <sstream>

#include "common/check.h"
#include "metrics/event_kinds.h"

namespace keel {

const char* to_string(MonitorState state) {
  switch (state) {
    case MonitorState::kHealthy: return "healthy";
    case MonitorState::kSuspect: return "suspect";
    case MonitorState::kRollback: return "rollback";
    case MonitorState::kAborted: return "aborted";
  }
  return "?";
}

const char* to_string(Action action) {
  switch (action) {
    case Action::kApply: return event_action::kApply;
    case Action::kSkipUpdate: return event_action::kSkipUpdate;
    case Action::kRollback: return event_action::kRollback;
    case Action::kRemedyRestart: return event_action::kRemedyRestart;
    case Action::kAbort: return event_action::kAbort;
  }
  return "?";
}

StabilityPolicy::StabilityPolicy(const StabilityConfig& config) : config_(config) {}

PolicyOutcome StabilityPolicy::outcome(Action action, std::string reason) const {
  PolicyOutcome out;
  out.action = action;
  out.state = state_;
  out.clip_scale = state_ == MonitorState::kSuspect ? config_.suspect_clip_scale : 1.0;
  out.onset_step = state_ == MonitorState::kHealthy ? -1 : episode_onset_;
  out.reason = std::move(reason);
  return out;
}

PolicyOutcome StabilityPolicy::observe_passive(const PolicyInput& in) {
  if (in.anomalies.empty()) {
    consecutive_anomalies_ = 0;
    return outcome(Action::kApply, "");
  }
  ++consecutive_anomalies_;
  for (const Detection& d : in.anomalies) {
    if (d.kind == event_kind::kNonFinite) return outcome(Action::kSkipUpdate, "non-finite update skipped (every mode)");
  }
  if (config_.mode == "skip_only") {
    // A verdict against the learning baseline fades as the baseline follows (llm.c). An absolute
    // one (loss above uniform guessing, the ceiling) does not: skipping it every time froze a
    // collapsed gpt2-124m for 396 of 400 steps on the H200. After suspect_steps_to_rollback
    // consecutive skips the update is applied: only training can leave that state.
    const bool statistical = std::any_of(in.anomalies.begin(), in.anomalies.end(),
                                         [](const Detection& d) { return !d.absolute; });
    if (statistical || consecutive_anomalies_ <= config_.suspect_steps_to_rollback)
      return outcome(Action::kSkipUpdate, "skip_only: update skipped");
    std::ostringstream why;
    why << "skip_only: update applied (anomalous step " << consecutive_anomalies_ << " in a row; an absolute "
        << "check skips at most " << config_.suspect_steps_to_rollback
        << " in a row: skipping every update would freeze the model)";
    return outcome(Action::kApply, why.str());
  }
  return outcome(Action::kApply, config_.mode == "clip_only" ? "clip_only: update applied (clipped)"
                                                             : "observe: no action");
}

PolicyOutcome StabilityPolicy::observe(const PolicyInput& in) {
  if (state_ == MonitorState::kAborted) return outcome(Action::kAbort, "the run was already aborted");
  if (config_.mode != "rollback") return observe_passive(in);
  KEEL_CHECK(state_ != MonitorState::kRollback,
             "stability policy: step " << in.step
                                       << " observed while a rollback is pending; the trainer must "
                                          "restore the checkpoint and call on_rollback_done() first");

  if (in.anomalies.empty()) {
    if (state_ != MonitorState::kSuspect) return outcome(Action::kApply, "");
    consecutive_anomalies_ = 0;
    if (++clean_steps_ < config_.suspect_recover_steps) return outcome(Action::kApply, "");
    std::ostringstream why;
    why << clean_steps_ << " clean steps since the episode that began at step " << episode_onset_
        << ": healthy again";
    state_ = MonitorState::kHealthy;
    clean_steps_ = 0;
    PolicyOutcome out = outcome(Action::kApply, why.str());
    out.onset_step = episode_onset_;
    out.recovered = true;
    episode_onset_ = -1;
    return out;
  }

  int64_t onset = in.step;
  for (const Detection& d : in.anomalies) onset = std::min(onset, d.onset_step);
  if (state_ == MonitorState::kHealthy) {
    state_ = MonitorState::kSuspect;
    episode_onset_ = onset;
    consecutive_anomalies_ = 0;
    episode_harms_ = false;
  } else {
    episode_onset_ = std::min(episode_onset_, onset);
  }
  ++consecutive_anomalies_;
  clean_steps_ = 0;
  // Evidence of harm: anything but a gradient norm that is only high against its own baseline.
  for (const Detection& d : in.anomalies) {
    episode_harms_ = episode_harms_ || d.kind != event_kind::kGradExplosion || d.absolute;
  }

  std::ostringstream why;
  // A severe loss spike alone may be one odd document; with a gradient or update anomaly of the
  // same step it is the model.
  bool corroborated = false;
  for (const Detection& d : in.anomalies) {
    corroborated = corroborated || d.kind == event_kind::kGradExplosion || d.kind == event_kind::kUpdateRatio ||
                   d.kind == event_kind::kNonFinite;
  }
  for (const Detection& d : in.anomalies) {
    if (d.kind == event_kind::kSustainedSpike && config_.rollback_on_sustained) {
      why << "sustained loss spike since step " << d.onset_step;
      break;
    }
    if (d.kind == event_kind::kLossSpike && d.z > 2 * config_.loss_z_threshold && corroborated) {
      why << "severe loss spike (z = " << d.z << " > 2 x " << config_.loss_z_threshold
          << ") with a gradient or update anomaly";
      break;
    }
  }
  if (why.tellp() == 0 && consecutive_anomalies_ >= config_.suspect_steps_to_rollback) {
    if (!episode_harms_) {
      // The gradient norm moved to a new level while the loss, the update ratio and every value
      // stayed healthy (early training does this when the model leaves its initial regime):
      // the gradient baseline follows, nothing is rolled back.
      std::ostringstream shift;
      shift << consecutive_anomalies_ << " consecutive steps with a high gradient norm since step " << episode_onset_
            << " and no harm to the loss: the gradient baseline follows the new level";
      PolicyOutcome out = outcome(Action::kApply, shift.str());
      out.onset_step = episode_onset_;
      out.gradient_shift = true;
      state_ = MonitorState::kHealthy;
      consecutive_anomalies_ = 0;
      clean_steps_ = 0;
      episode_onset_ = -1;
      return out;
    }
    why << consecutive_anomalies_ << " consecutive anomalous steps since step " << episode_onset_;
  }
  if (why.tellp() > 0) return escalate(in, why.str());

  std::ostringstream skip;
  skip << "suspect: update skipped (" << consecutive_anomalies_ << " of "
       << config_.suspect_steps_to_rollback << " consecutive anomalous steps before a rollback)";
  return outcome(Action::kSkipUpdate, skip.str());
}

PolicyOutcome StabilityPolicy::escalate(const PolicyInput& in, const std::string& why) {
  forget_old_rollbacks(in.tick);
  bool have_target = !in.can_roll_back || in.can_roll_back(episode_onset_);
  int64_t prior = static_cast<int64_t>(rollbacks_.size());
  bool under_limit = prior < config_.max_rollbacks || config_.on_repeated_spikes == "rollback";
  const bool futile = !in.rollbacks_futile.empty() && config_.on_repeated_spikes != "rollback";

  std::ostringstream reason;
  reason << why;
  if (have_target && under_limit && !futile) {
    rollbacks_.push_back({in.tick, in.step, episode_onset_});
    state_ = MonitorState::kRollback;
    reason << "; rollback " << prior + 1 << " within the last " << config_.rollback_window_steps
           << " steps (max_rollbacks = " << config_.max_rollbacks << ")";
    return outcome(Action::kRollback, reason.str());
  }

  if (futile && have_target && under_limit) {
    reason << "; " << in.rollbacks_futile;
  } else if (!have_target) {
    reason << "; no checkpoint to roll back to before the onset at step " << episode_onset_;
  } else {
    reason << "; a rollback would be number " << prior + 1 << " within the last "
           << config_.rollback_window_steps << " steps, more than max_rollbacks = "
           << config_.max_rollbacks;
  }
  if (config_.on_repeated_spikes == "remedy_restart") {
    if (episode_onset_ < config_.remedy_restart_before_step && remedy_restarts_ == 0) {
      ++remedy_restarts_;
      rollbacks_.clear();  // the restarted run gets a fresh rollback budget
      state_ = MonitorState::kRollback;
      reason << "; on_repeated_spikes = remedy_restart: restarting from scratch with a remedy";
      return outcome(Action::kRemedyRestart, reason.str());
    }
    reason << "; remedy_restart not allowed ("
           << (remedy_restarts_ > 0 ? "already restarted once"
                                    : "onset is not before remedy_restart_before_step = " +
                                          std::to_string(config_.remedy_restart_before_step))
           << ")";
  }
  state_ = MonitorState::kAborted;
  reason << ": aborting";
  return outcome(Action::kAbort, reason.str());
}

PolicyOutcome StabilityPolicy::order_restart(int64_t step, int64_t tick, const std::string& why) {
  KEEL_CHECK(state_ != MonitorState::kRollback && state_ != MonitorState::kAborted,
             "stability policy: restart ordered at step " << step << " while " << to_string(state_));
  episode_onset_ = 0;  // the whole timeline is the episode: back to the initial state
  PolicyInput in;
  in.step = step;
  in.tick = tick;
  return escalate(in, why);
}

PolicyOutcome StabilityPolicy::order_measured_restart(const std::string& why) {
  KEEL_CHECK(state_ != MonitorState::kRollback && state_ != MonitorState::kAborted,
             "stability policy: measured restart ordered while " << to_string(state_));
  episode_onset_ = 0;
  state_ = MonitorState::kRollback;
  return outcome(Action::kRollback, why);
}

PolicyOutcome StabilityPolicy::abort(const std::string& why) {
  state_ = MonitorState::kAborted;
  return outcome(Action::kAbort, why + ": aborting");
}

void StabilityPolicy::on_rollback_done() {
  KEEL_CHECK(state_ == MonitorState::kRollback, "stability policy: on_rollback_done() while "
                                                    << to_string(state_) << ", no rollback pending");
  state_ = MonitorState::kHealthy;
  consecutive_anomalies_ = 0;
  clean_steps_ = 0;
  episode_onset_ = -1;
}

void StabilityPolicy::forget_old_rollbacks(int64_t tick) {
  auto old = [&](const RollbackRecord& r) { return r.tick <= tick - config_.rollback_window_steps; };
  rollbacks_.erase(std::remove_if(rollbacks_.begin(), rollbacks_.end(), old), rollbacks_.end());
}

int64_t StabilityPolicy::rollbacks_in_window(int64_t tick) const {
  return std::count_if(rollbacks_.begin(), rollbacks_.end(), [&](const RollbackRecord& r) {
    return r.tick > tick - config_.rollback_window_steps;
  });
}

nlohmann::json StabilityPolicy::to_json() const {
  nlohmann::json rollbacks = nlohmann::json::array();
  for (const auto& r : rollbacks_) rollbacks.push_back({r.tick, r.step, r.onset_step});
  return {{"state", static_cast<int>(state_)},
          {"consecutive_anomalies", consecutive_anomalies_},
          {"clean_steps", clean_steps_},
          {"episode_onset", episode_onset_},
          {"remedy_restarts", remedy_restarts_},
          {"episode_harms", episode_harms_},
          {"rollbacks", rollbacks}};
}

void StabilityPolicy::from_json(const nlohmann::json& j) {
  int state = j.at("state").get<int>();
  KEEL_CHECK(state >= 0 && state <= static_cast<int>(MonitorState::kAborted),
             "saved stability policy state " << state << " is not a MonitorState");
  state_ = static_cast<MonitorState>(state);
  consecutive_anomalies_ = j.at("consecutive_anomalies").get<int64_t>();
  clean_steps_ = j.at("clean_steps").get<int64_t>();
  episode_onset_ = j.at("episode_onset").get<int64_t>();
  remedy_restarts_ = j.at("remedy_restarts").get<int64_t>();
  episode_harms_ = j.value("episode_harms", true);
  rollbacks_.clear();
  for (const auto& r : j.at("rollbacks")) {
    rollbacks_.push_back({r.at(0).get<int64_t>(), r.at(1).get<int64_t>(), r.at(2).get<int64_t>()});
  }
}

}  // namespace keel
