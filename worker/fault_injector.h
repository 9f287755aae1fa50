// Fault injection for tests and demos (config section `debug`): a corrupted batch, NaN gradients,
// an LR spike. Each fault fires once per run, also across rollbacks and resumes (the monitor's
// rescue must not meet the same injected fault again), so what has fired is saved in every
// checkpoint. A run with any injection on says so loudly at start-up.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <set>
#include <string>
#include <vector>

#include "stability/stability_config.h"

namespace keel {

class FaultInjector {
 public:
  // `announce`: log each fault when it fires (world rank 0 only).
  FaultInjector(DebugConfig debug, int64_t seed, int64_t vocab_size, bool announce);

  // debug.inject_bad_batch_at: replaces step `step`'s first micro-batch by uniformly random tokens
  // (a corrupted shard region), deterministic per step. inputs/targets: (B*T) token ids.
  void corrupt_batch(int64_t step, int64_t batch, int64_t seq, std::vector<int32_t>& inputs,
                     std::vector<int32_t>& targets);
  // debug.inject_nan_grad_at: fills the first parameter's gradient with NaN.
  void poison_gradients(int64_t step, const std::vector<torch::Tensor>& params);
  // debug.inject_lr_spike_*: the factor on this step's LR (1 outside the spike, and for good once
  // the spike ran to its end or a rollback abandoned it).
  double lr_factor(int64_t step);
  // A rollback: an LR spike in progress is over for good (the other faults already fired).
  void on_rollback();

  // Saved in trainer_state.json's "injections_done" (the names of the faults that fired).
  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& fired);

 private:
  // True the first time fault `name` is due at `step` (then remembered as fired).
  bool fires(const std::string& name, int64_t at_step, int64_t step);

  DebugConfig debug_;
  int64_t seed_;
  int64_t vocab_size_;
  bool announce_;
  std::set<std::string> fired_;
  bool lr_spike_over_ = false;
};

}  // namespace keel
