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
  for (const auto& h : samples) a.push_back({h.step, encode(h.loss), encode(h.grad_norm)});
  return a;
}

template <typename Sample>
std::deque<Sample> samples_from_json(const nlohmann::json& j) {
  using stability_json::decode;
  std::deque<Sample> out;
  for (const auto& h : j) out.push_back({h.at(0).get<int64_t>(), decode(h.at(1)), decode(h.at(2))});
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
  return {{"version", 1},
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
  KEEL_CHECK(j.at("version").get<int>() == 1,
             "unsupported stability monitor state version " << j.at("version"));
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
  if (!grad_ok || !loss_ok) {
    spdlog::warn("stability: saved baselines use another method than '{}'; rebuilt from {} "
                 "healthy values", config_.method, history_.size());
    rebuild_baselines();
  }
  policy_.from_json(j.at("policy"));
  tracker_.from_json(j.at("tracker"));
}

}  // namespace keel
