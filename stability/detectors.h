// Anomaly detectors of the stability monitor, one small class per failure mode. Each judges one
// step's already-reduced signal against a baseline and returns a Detection; none of them decides
// what to do about it (that is StabilityPolicy's job).
//
// Warm-up rules (shared by all statistical detectors):
//  - no verdicts before step `warmup_steps`, and none from a z-score until the baseline holds at
//    least kMinBaselineSamples values (this also covers a run resumed without monitor state and
//    the re-warm-up after a rollback emptied the baseline);
//  - baselines learn from step warmup_steps / 5 on (see baseline_start_step): the first steps of
//    a run have the steepest loss drop and the largest gradients and would only inflate the scale;
//  - NonFiniteDetector has no warm-up: a NaN is a NaN from step 0.
// Baselines only learn what the caller passes to learn(): the monitor passes healthy steps only.
// Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "stability/rolling_stats.h"
#include "stability/stability_config.h"

namespace keel {

// The verdict of one detector on one step.
struct Detection {
  bool anomaly = false;
  // "nonfinite", "grad_explosion", "loss_spike", "sustained_spike" or "update_ratio".
  std::string kind;
  double value = 0;     // the judged value (loss, grad norm, ratio), in its own units
  double baseline = 0;  // what it was compared with (baseline center, ceiling, ...)
  double z = 0;         // the z-score, where one applies
  std::string reason;   // human-readable, with the numbers
  int64_t step = -1;
  // First step of the condition: the step itself, except for a sustained spike, whose onset is
  // the first step of the elevated stretch.
  int64_t onset_step = -1;
};

// Minimum baseline size before z-score verdicts.
constexpr int64_t kMinBaselineSamples = 16;
// Floor of the log-space grad-norm scale: a 5% relative wiggle is one "sigma" at least, so a
// synthetic or unusually flat grad-norm series cannot turn noise into an explosion.
constexpr double kMinLogGradNormScale = 0.05;

// First step whose values enter the baselines (warmup_steps / 5).
int64_t baseline_start_step(const StabilityConfig& config);

// Non-finite loss, grad norm or per-layer grad norm, or the trainer's grads_finite=false flag.
class NonFiniteDetector {
 public:
  Detection observe(int64_t step, double loss, double grad_norm, bool grads_finite,
                    const std::vector<double>& layer_grad_norms = {}) const;
};

// Global grad-norm explosion: the z-score of log(grad_norm) above grad_z_threshold, or the norm
// above grad_norm_ceiling. Log space because grad norms are positive with multiplicative noise:
// a threshold then means the same at every scale of the norm, and a x20 jump is ~3 log units.
// Detection.value and .baseline are in norm units (baseline = exp(center)); .z is the log-space z.
class GradNormExplosionDetector {
 public:
  explicit GradNormExplosionDetector(const StabilityConfig& config);

  Detection observe(int64_t step, double grad_norm,
                    const std::vector<double>& layer_grad_norms = {}) const;
  // Adds a healthy norm to the baseline (ignored before baseline_start_step or if not > 0).
  void learn(int64_t step, double grad_norm);
  // Replaces the baseline with these raw norms (oldest first).
  void rebuild(const std::vector<double>& grad_norms);
  const RobustZScore& baseline() const { return log_norms_; }

  nlohmann::json to_json() const { return log_norms_.to_json(); }
  bool from_json(const nlohmann::json& j) { return log_norms_.from_json(j); }

 private:
  StabilityConfig config_;
  RobustZScore log_norms_;
};

// Loss spikes: a point spike (z above loss_z_threshold AND a rise above loss_min_rise) and a
// sustained spike (loss above baseline + sustained_margin for sustained_steps consecutive steps;
// reported every step while it lasts, with the onset of the elevated stretch). When both hold,
// the sustained spike is reported: it is the stronger verdict and has the earlier onset.
class LossSpikeDetector {
 public:
  explicit LossSpikeDetector(const StabilityConfig& config);

  // Judges the loss and advances the sustained-run counter.
  Detection observe(int64_t step, double loss);
  // Whether the last observed loss was above baseline + sustained_margin. Elevated losses are
  // not healthy baseline material even before they become a sustained spike.
  bool elevated() const { return elevated_; }
  int64_t sustained_run() const { return run_length_; }

  void learn(int64_t step, double loss);
  // Replaces the baseline (oldest first) and forgets any elevated stretch.
  void rebuild(const std::vector<double>& losses);
  const RobustZScore& baseline() const { return losses_; }

  nlohmann::json to_json() const;
  bool from_json(const nlohmann::json& j);

 private:
  StabilityConfig config_;
  RobustZScore losses_;
  bool elevated_ = false;
  int64_t run_length_ = 0;
  int64_t run_start_step_ = -1;
};

// Update-to-weight ratio above update_ratio_ceiling (off when the ceiling is 0). No baseline.
class UpdateRatioDetector {
 public:
  explicit UpdateRatioDetector(const StabilityConfig& config) : config_(config) {}
  Detection observe(int64_t step, double update_ratio) const;

 private:
  StabilityConfig config_;
};

}  // namespace keel
