// Good-checkpoint bookkeeping for rollbacks (see checkpoint_tracker.h).
#include "stability/checkpoint_tracker.h"

#include <algorithm>

#include "common/check.h"

namespace keel {

GoodCheckpointTracker::GoodCheckpointTracker(int64_t guard_steps) : guard_steps_(guard_steps) {
  KEEL_CHECK(guard_steps >= 1, "guard_steps must be >= 1, got " << guard_steps);
}

void GoodCheckpointTracker::on_checkpoint(int64_t step) {
  checkpoints_.insert(step);
  current_step_ = std::max(current_step_, step - 1);
  prune_anomalies();
}

void GoodCheckpointTracker::on_checkpoint_removed(int64_t step) {
  checkpoints_.erase(step);
  confirmed_.erase(step);
  prune_anomalies();
}

void GoodCheckpointTracker::on_anomaly(int64_t step) { anomalies_.insert(step); }

void GoodCheckpointTracker::advance(int64_t current_step) { current_step_ = current_step; }

bool GoodCheckpointTracker::anomaly_in(int64_t from, int64_t up_to) const {
  auto it = anomalies_.lower_bound(from);
  return it != anomalies_.end() && *it <= up_to;
}

bool GoodCheckpointTracker::is_good(int64_t step) const {
  if (checkpoints_.count(step) == 0) return false;
  if (confirmed_.count(step) > 0) return true;
  return current_step_ >= step + guard_steps_ && !anomaly_in(step, step + guard_steps_);
}

std::optional<int64_t> GoodCheckpointTracker::fallback_before(int64_t onset_step) const {
  auto it = checkpoints_.lower_bound(onset_step);
  if (it == checkpoints_.begin()) return std::nullopt;
  --it;  // the newest checkpoint strictly before the onset
  // An anomaly after it lies after every older checkpoint too.
  if (anomaly_in(*it, onset_step - 1)) return std::nullopt;
  return *it;
}

std::optional<int64_t> GoodCheckpointTracker::rollback_target(int64_t onset_step) const {
  for (auto it = checkpoints_.lower_bound(onset_step); it != checkpoints_.begin();) {
    --it;
    if (is_good(*it)) return *it;
  }
  return fallback_before(onset_step);
}

std::set<int64_t> GoodCheckpointTracker::protected_steps() const {
  for (auto it = checkpoints_.rbegin(); it != checkpoints_.rend(); ++it) {
    if (is_good(*it)) return {*it};
  }
  if (auto fallback = fallback_before(current_step_ + 1)) return {*fallback};
  return {};
}

void GoodCheckpointTracker::on_rollback(int64_t target) {
  for (int64_t c : checkpoints_) {
    if (c <= target && is_good(c)) confirmed_.insert(c);
  }
  checkpoints_.erase(checkpoints_.upper_bound(target), checkpoints_.end());
  confirmed_.erase(confirmed_.upper_bound(target), confirmed_.end());
  anomalies_.erase(anomalies_.lower_bound(target), anomalies_.end());
  current_step_ = target - 1;
}

void GoodCheckpointTracker::prune_anomalies() {
  // An anomaly before the oldest checkpoint can no longer affect any verdict.
  if (checkpoints_.empty()) return;
  anomalies_.erase(anomalies_.begin(), anomalies_.lower_bound(*checkpoints_.begin()));
}

nlohmann::json GoodCheckpointTracker::to_json() const {
  return {{"guard_steps", guard_steps_},
          {"current_step", current_step_},
          {"checkpoints", checkpoints_},
          {"confirmed", confirmed_},
          {"anomalies", anomalies_}};
}

void GoodCheckpointTracker::from_json(const nlohmann::json& j) {
  // guard_steps comes from the current config; a changed guard applies from now on.
  current_step_ = j.at("current_step").get<int64_t>();
  checkpoints_ = j.at("checkpoints").get<std::set<int64_t>>();
  confirmed_ = j.at("confirmed").get<std::set<int64_t>>();
  anomalies_ = j.at("anomalies").get<std::set<int64_t>>();
}

}  // namespace keel
