// Which checkpoints are safe to roll back to.
//
// A checkpoint at step C (the state after C completed steps; step C is the first trained on its
// weights, see stability_config.h) is *good* once the steps after it have run with no anomaly:
// current_step >= C + guard and no anomaly in [C, C + guard]. (The closed interval also covers
// step C itself, the first verdict on C's weights, and stays safe under either step convention.) Goodness is computed from the recorded anomalies when asked, so an
// anomaly recorded late (a sustained spike is recognized sustained_steps after its onset) still
// counts against the checkpoints before it.
//
// rollback_target(onset) is the newest good checkpoint strictly before the onset. When no
// checkpoint before the onset is confirmed good yet (early in a run, or right after a rollback
// to an unconfirmed one), it falls back to the newest checkpoint strictly before the onset with
// no anomaly recorded in [C, onset): the best available guess, since nothing went wrong between
// it and the onset; without this, an early spike could only abort.
//
// protected_steps() names what keep-last-K retention must not delete: the newest good checkpoint
// (every future onset lies after it, so it is always a valid target) or, while none is good yet,
// the newest checkpoint with no anomaly after it (the fallback target).
// Torch-free; the state serializes to JSON for exact resume.
#pragma once

#include <cstdint>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

namespace keel {

class GoodCheckpointTracker {
 public:
  explicit GoodCheckpointTracker(int64_t guard_steps);

  void on_checkpoint(int64_t step);          // a checkpoint was saved at this step
  void on_checkpoint_removed(int64_t step);  // retention deleted it: never offer it again
  void on_anomaly(int64_t step);             // an anomaly (its onset) at this step
  void advance(int64_t current_step);        // steps up to current_step have been judged

  bool is_good(int64_t step) const;
  std::optional<int64_t> rollback_target(int64_t onset_step) const;
  std::set<int64_t> protected_steps() const;
  // The run was restored to `target`: forget checkpoints after it and anomalies at or after it
  // (an abandoned timeline), and rewind current_step to target - 1 (step target is trained
  // next). Checkpoints good before the rollback stay good.
  void on_rollback(int64_t target);

  const std::set<int64_t>& checkpoints() const { return checkpoints_; }
  int64_t current_step() const { return current_step_; }
  int64_t guard_steps() const { return guard_steps_; }

  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& j);

 private:
  bool anomaly_in(int64_t from, int64_t up_to) const;  // any anomaly in [from, up_to]
  std::optional<int64_t> fallback_before(int64_t onset_step) const;
  void prune_anomalies();

  int64_t guard_steps_;
  int64_t current_step_ = -1;
  std::set<int64_t> checkpoints_;
  std::set<int64_t> confirmed_;  // good when a rollback rewound the clock; sticky
  std::set<int64_t> anomalies_;  // only those at or after the oldest known checkpoint matter
};

}  // namespace keel
