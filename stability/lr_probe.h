// LearningRateProbe: an LR range test (Smith 2017, "Cyclical Learning Rates for Training Neural
// Networks", section 3.3; fastai's lr_find) that the stability monitor runs from the initial
// state after a run failed before anything good existed. Why: such a failure says only that the
// LR was too high, not by how much, and a fixed cut guesses. Measured on the CPU bench
// (2026-12-07): the LRs that fail in the first steps are 6-100x above the one that learns, and
// between the two the model does not fail visibly, it settles quietly at the unigram level, so a
// cut of x0.3 per failure stops far too early. The probe measures instead: it trains `steps`
// steps from the initial state with the LR rising geometrically from failed / 10^span_decades to
// the LR that failed, follows a smoothed loss, stops at the first sign of divergence (a
// non-finite value, or the smoothed loss `divergence_margin` nats above its best) and picks the
// LR at which the smoothed loss was lowest divided by `divisor` (the range test's classic choice:
// an order of magnitude below where the loss stops falling). The monitor then restarts from the
// initial state at that LR; the probe's steps are discarded.
//
// LRs are fractions of the peak LR (train.lr). Pure and Torch-free; the state round-trips
// through JSON so a run resumed mid-probe decides the same.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace keel {

class LearningRateProbe {
 public:
  // Plans a probe of `steps` steps (>= 2) ending at `failed_fraction` of the peak (the LR that
  // failed), starting span_decades decades below it. It begins with begin() (after the restart).
  void plan(double failed_fraction, int64_t steps, double span_decades, double divisor, double divergence_margin);
  // The planned probe starts at step 0 of the restarted timeline.
  void begin();
  bool planned() const { return state_ == State::kPlanned; }
  bool active() const { return state_ == State::kActive; }
  bool finished() const { return state_ == State::kFinished; }
  // The probe's LR at `step` (0-based from the restart) as a fraction of the peak; the last value
  // holds past the end.
  double fraction_at(int64_t step) const;
  // One probe step: the loss computed before the update of `step` (so it reflects the LRs of the
  // steps before) and whether loss and gradients were finite. Returns true when the probe is
  // done (it diverged, or reached its last step); the result is then fixed.
  bool observe(int64_t step, double loss, bool finite);
  // The LR the run should train at (fraction of the peak), once finished.
  double chosen_fraction() const { return chosen_; }
  // What the probe saw, for the event and the terminal: the range, where the smoothed loss was
  // lowest, where (whether) it diverged, and the choice.
  std::string report() const;

  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& j);

 private:
  enum class State { kIdle, kPlanned, kActive, kFinished };
  void finish(const char* why);

  State state_ = State::kIdle;
  double failed_ = 0;        // top of the range (fraction of the peak)
  int64_t steps_ = 0;
  double span_decades_ = 3;
  double divisor_ = 10;
  double margin_ = 0.5;
  // Bias-corrected EMA of the loss (beta below): short probes need a short memory.
  double ema_ = 0, ema_weight_ = 0;
  double best_smoothed_ = 0;
  double best_fraction_ = 0;   // LR (fraction) that produced the best smoothed loss
  int64_t best_step_ = -1;
  int64_t last_step_ = -1;
  bool diverged_ = false;
  int64_t diverged_step_ = -1;
  std::string end_reason_;
  double chosen_ = 0;
};

}  // namespace keel
