// ProgressDetector: failures that no single step shows, because the run as a whole is not
// learning. A model that collapsed early (a high LR in warm-up) trains on with a healthy-looking,
// flat loss: its baselines were learned in the collapsed regime, so every step looks normal.
//  - flat_loss: after flat_after_tokens the slow loss average is not below the data's unigram
//    entropy minus flat_margin: the model predicts no better than token frequencies. When the
//    loss is still clearly falling it is reported as too slow (warn), not as a failure.
//  - stalled:   the slow average fell by less than stall_min_drop over stall_tokens.
//  - val_rising: the validation loss rose at each of the last val_rise_evals evaluations (by
//    more than val_rise_margin in all) while the training loss did not rise.
// Each fires once per timeline (a restart re-arms them). Torch-free; serializes to JSON.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "stability/detectors.h"
#include "stability/stability_config.h"

namespace keel {

// What the monitor knows about the run: its batch, length and data.
struct RunFacts {
  int64_t tokens_per_step = 0;   // global tokens per optimizer step; 0 = unknown (step keys)
  int64_t total_steps = 0;       // train.steps; 0 = unknown (no auto thresholds)
  double unigram_entropy = 0;    // nats, of the training tokens; 0 = unknown (no flat_loss check)
  int64_t vocab_size = 0;        // model vocabulary; 0 = unknown (no loss-vs-uniform check)
  double peak_lr = 0;            // train.lr, for the advice in abort messages; 0 = unknown
  int64_t lr_warmup_steps = 0;   // train.warmup_steps: a model still warming up is not judged flat
                                 // (and the schedule's linear warm-up, which a restart may lengthen)
  double adam_beta2 = 0;         // the optimizer's beta2: a restart warms up over 2 / (1 - beta2) steps at
                                 // least; 0 = unknown
  // The model has normalisation layers (model.norm != none). Without them an explosion that returns
  // after an LR cut is put down to the architecture, not the LR: no further cuts.
  bool normalized = true;
};

class ProgressDetector {
 public:
  ProgressDetector(const StabilityConfig& config, const RunFacts& facts);

  // Every step with a finite loss; returns at most one detection: flat_loss (an anomaly) or a
  // warning (stalled, or flat but still falling: anomaly = false, kind set).
  Detection observe_train(int64_t step, double loss);
  // Every evaluation; a val_rising warning (anomaly = false, kind set) or nothing.
  Detection observe_val(int64_t step, double val_loss);
  // The run went back to `step` (a rollback or a restart from the initial state): forget what
  // happened after it and re-arm the one-shot checks.
  void on_rewind(int64_t step);

  // Steps after which the flat check applies, and the stall window in steps (0 = off/unknown).
  int64_t flat_after_steps() const { return flat_after_steps_; }
  int64_t stall_steps() const { return stall_steps_; }
  double slow_average() const { return slow_; }

  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& j);

 private:
  StabilityConfig config_;
  RunFacts facts_;
  int64_t flat_after_steps_ = 0;
  int64_t stall_steps_ = 0;
  int64_t sample_every_ = 1;
  double slow_alpha_;
  double slow_ = 0;
  bool have_slow_ = false;
  bool flat_fired_ = false;
  int64_t stall_fired_at_ = -1;
  std::deque<std::pair<int64_t, double>> samples_;  // (step, slow average), every sample_every_ steps
  std::vector<std::pair<double, double>> evals_;    // (val loss, slow train average) per evaluation
  bool val_fired_ = false;
};

}  // namespace keel
