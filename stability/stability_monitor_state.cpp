// Saved state of the stability monitor (see stability_monitor.h): everything a resumed run needs
// to reach bit-identical decisions (windows, baselines, counters, tracker, snapshots), and the
// verdict hash that lets distributed ranks prove they agree. Doubles are stored exactly
// (json_doubles.h).
#include <spdlog/spdlog.h>

#include "common/check.h"
#include "stability/json_doubles.h"
#include "stability/stability_monitor.h"

namespace keel {
namespace {

void fnv1a(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
}

template <typename Samples>
nlohmann::json samples_to_json(const Samples& samples) {
  using stability_json::encode;
  nlohmann::json a = nlohmann::json::array();
  for (const auto& h : samples) a.push_back({h.step, encode(h.loss), encode(h.grad_norm), encode(h.update_ratio)});
  return a;
}

template <typename Sample>
std::deque<Sample> samples_from_json(const nlohmann::json& j) {
  using stability_json::decode;
  std::deque<Sample> out;
  // Version 1 states have no update ratio (0 = not measured).
  for (const auto& h : j)
    out.push_back({h.at(0).get<int64_t>(), decode(h.at(1)), decode(h.at(2)), h.size() > 3 ? decode(h.at(3)) : 0.0});
  return out;
}

}  // namespace

uint64_t StabilityMonitor::verdict_hash(int64_t step) const {
  uint64_t h = 14695981039346656037ULL;
  fnv1a(h, &step, sizeof(step));
  std::string state = state_to_json().dump();
  fnv1a(h, state.data(), state.size());
  return h;
}

nlohmann::json StabilityMonitor::state_to_json() const {
  using stability_json::encode;
  nlohmann::json snapshots = nlohmann::json::array();
  for (const auto& [step, samples] : snapshots_) snapshots.push_back({step, samples_to_json(samples)});
  nlohmann::json positions = nlohmann::json::array();
  for (const auto& [step, data] : positions_) positions.push_back({step, data.to_json()});
  return {{"version", 2},
          {"cooldown_factor", encode(cooldown_factor_)},
          {"cooldown_steps", cooldown_steps_},
          {"cooldown_clip", encode(cooldown_clip_)},
          {"lr_scale", encode(lr_scale_)},
          {"restart_warmup_steps", restart_warmup_steps_},
          {"peak_lr", encode(facts_.peak_lr)},
          {"lr_diagnosed", lr_diagnosed_},
          {"lr_probe", lr_probe_.to_json()},
          {"initial_state", initial_state_},
          {"positions", positions},
          {"elevated_samples", samples_to_json(elevated_samples_)},
          {"update_ratio_detector", update_ratio_.to_json()},
          {"progress_detector", progress_.to_json()},
          {"tick", tick_},
          {"cooldown_start", cooldown_start_},
          {"pending", static_cast<int>(pending_)},
          {"abort_message", abort_message_},
          {"last", {last_.step, static_cast<int>(last_.action), encode(last_.clip_scale),
                    last_.rollback_to_step, last_.onset_step, last_.skip_batches}},
          {"history", samples_to_json(history_)},
          {"snapshots", snapshots},
          {"loss_evidence", encode(loss_evidence_.values())},
          {"grad_evidence", encode(grad_evidence_.values())},
          {"grad_detector", grad_.to_json()},
          {"loss_detector", loss_.to_json()},
          {"policy", policy_.to_json()},
          {"tracker", tracker_.to_json()}};
}

void StabilityMonitor::state_from_json(const nlohmann::json& j) {
  using stability_json::decode;
  const int version = j.at("version").get<int>();
  KEEL_CHECK(version == 1 || version == 2, "unsupported stability monitor state version " << j.at("version"));
  if (version >= 2) {
    cooldown_factor_ = decode(j.at("cooldown_factor"));
    cooldown_steps_ = j.at("cooldown_steps").get<int64_t>();
    cooldown_clip_ = decode(j.at("cooldown_clip"));
    lr_scale_ = decode(j.at("lr_scale"));
    // The abort advice suggests train.lr = the effective LR x lr_backoff: a resume with another
    // train.lr replaces the monitor's scale instead of being scaled by it a second time.
    const double saved_peak_lr = j.contains("peak_lr") ? decode(j.at("peak_lr")) : 0.0;
    if (saved_peak_lr > 0 && facts_.peak_lr > 0 && saved_peak_lr != facts_.peak_lr && lr_scale_ != 1.0) {
      spdlog::info("stability: train.lr is {} (was {}): it replaces the monitor's LR scale x{}", facts_.peak_lr,
                   saved_peak_lr, lr_scale_);
      lr_scale_ = 1.0;
    }
    // States saved before restarts added a warm-up have none.
    restart_warmup_steps_ = j.value("restart_warmup_steps", int64_t{0});
    lr_diagnosed_ = j.at("lr_diagnosed").get<bool>();
    // States saved before the LR range test existed have none.
    lr_probe_ = LearningRateProbe();
    if (j.contains("lr_probe")) lr_probe_.from_json(j.at("lr_probe"));
    initial_state_ = j.at("initial_state").get<bool>();
    positions_.clear();
    for (const auto& p : j.at("positions")) positions_.emplace_back(p.at(0).get<int64_t>(), DataPosition::from_json(p.at(1)));
    elevated_samples_ = samples_from_json<HealthySample>(j.at("elevated_samples"));
    progress_.from_json(j.at("progress_detector"));
  } else {
    // A version-1 state (before escalation): its cooldown was lr_cooldown_factor over lr_cooldown_steps.
    cooldown_factor_ = config_.lr_cooldown_factor;
    cooldown_steps_ = config_.lr_cooldown_steps;
  }
  tick_ = j.at("tick").get<int64_t>();
  cooldown_start_ = j.at("cooldown_start").get<int64_t>();
  pending_ = static_cast<Action>(j.at("pending").get<int>());
  abort_message_ = j.at("abort_message").get<std::string>();
  const auto& last = j.at("last");
  last_ = {last.at(0).get<int64_t>(), static_cast<Action>(last.at(1).get<int>()), decode(last.at(2)),
           last.at(3).get<int64_t>(), last.at(4).get<int64_t>(), last.at(5).get<int64_t>()};
  history_ = samples_from_json<HealthySample>(j.at("history"));
  snapshots_.clear();
  for (const auto& s : j.at("snapshots")) {
    snapshots_[s.at(0).get<int64_t>()] = samples_from_json<HealthySample>(s.at(1));
  }
  while (history_.size() > static_cast<size_t>(config_.window)) history_.pop_front();
  loss_evidence_.clear();
  for (double x : stability_json::decode_vector(j.at("loss_evidence"))) loss_evidence_.push(x);
  grad_evidence_.clear();
  for (double x : stability_json::decode_vector(j.at("grad_evidence"))) grad_evidence_.push(x);
  bool grad_ok = grad_.from_json(j.at("grad_detector"));
  bool loss_ok = loss_.from_json(j.at("loss_detector"));
  bool ratio_ok = version >= 2 ? update_ratio_.from_json(j.at("update_ratio_detector")) : false;
  if (version < 2) {
    std::vector<double> ratios;
    for (const auto& h : history_) ratios.push_back(h.update_ratio);
    update_ratio_.rebuild(ratios);
    ratio_ok = true;
  }
  if (!grad_ok || !loss_ok || !ratio_ok) {
    spdlog::warn("stability: saved baselines use another method than '{}'; rebuilt from {} "
                 "healthy values", config_.method, history_.size());
    rebuild_baselines();
  }
  policy_.from_json(j.at("policy"));
  tracker_.from_json(j.at("tracker"));
}

}  // namespace keel
