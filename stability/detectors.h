// Anomaly detectors of the stability monitor, one small class per failure mode. Each judges one
// step's already-reduced signal against a baseline and returns a Detection; none of them decides
// what to do about it (that is StabilityPolicy's job).
//
// From step 0 (no baseline needed): non-finite values, the absolute grad-norm ceiling, the
// update-ratio ceiling and a loss worse than guessing uniformly (ln(vocab) + loss_over_uniform).
// A run that explodes in its first steps is therefore seen while it explodes, not after.
// Statistical verdicts (z-scores against a baseline of healthy values) start as soon as the
// baseline holds kMinBaselineSamples values (fewer with a smaller window); baselines learn from
// step warmup_steps on (see baseline_start_step). Baselines only learn what the caller passes to
// learn(): the monitor passes healthy steps only. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "metrics/event_kinds.h"
#include "stability/rolling_stats.h"
#include "stability/stability_config.h"

namespace keel {

// The verdict of one detector on one step.
struct Detection {
  bool anomaly = false;
  // An event_kind:: detection name ("nonfinite", "grad_explosion", "loss_spike",
  // "sustained_spike", "update_ratio", "flat_loss", ...) or kLevelShift.
  std::string kind;
  double value = 0;     // the judged value (loss, grad norm, ratio), in its own units
  double baseline = 0;  // what it was compared with (baseline center, ceiling, ...)
  double z = 0;         // the z-score, where one applies
  std::string reason;   // human-readable, with the numbers
  int64_t step = -1;
  // First step of the condition: the step itself, except for a sustained spike, whose onset is
  // the first step of the elevated stretch.
  int64_t onset_step = -1;
  // Judged against an absolute limit (a ceiling, the uniform-guess loss), not a baseline.
  bool absolute = false;
};

// Minimum baseline size before z-score verdicts.
constexpr int64_t kMinBaselineSamples = 16;
// Floor of the log-space grad-norm scale: a 5% relative wiggle is one "sigma" at least, so a
// synthetic or unusually flat grad-norm series cannot turn noise into an explosion.
constexpr double kMinLogGradNormScale = 0.05;

// First step whose values enter the baselines (warmup_steps).
int64_t baseline_start_step(const StabilityConfig& config);

// Non-finite loss, grad norm or per-layer grad norm, or the trainer's grads_finite=false flag.
class NonFiniteDetector {
 public:
  Detection observe(int64_t step, double loss, double grad_norm, bool grads_finite,
                    const std::vector<double>& layer_grad_norms = {}) const;
};

// Global grad-norm explosion: the z-score of log(grad_norm) above grad_z_threshold (and the norm
// at least grad_min_factor x the baseline), or the norm above grad_norm_ceiling (from step 0).
// Log space because grad norms are positive with multiplicative noise: a threshold then means the
// same at every scale of the norm, and a x20 jump is ~3 log units.
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
  bool ready() const;
  // clip_only: the norm a gradient of log-space z above clip_z_threshold is clipped to
  // (exp(center + clip_z_threshold x scale)); 0 while the baseline is not ready.
  double adaptive_clip_norm() const;

  nlohmann::json to_json() const { return log_norms_.to_json(); }
  bool from_json(const nlohmann::json& j) { return log_norms_.from_json(j); }

 private:
  StabilityConfig config_;
  RobustZScore log_norms_;
};

// Loss spikes on two time scales. The slow baseline is the window of healthy losses; the fast
// average is an EMA over ~sustained_steps / 4 steps of every observed loss.
//  - point spike: this step's loss z above loss_z_threshold and a rise above loss_min_rise, when
//    corroborate() was called for this step (a gradient or update-ratio anomaly of the same step)
//    or the rise is severe (above level_shift_max_rise with z above 2 x loss_z_threshold); and,
//    from step 0, a loss above ln(vocab) + loss_over_uniform. A loss-only rise below that is not
//    judged on one step: one odd batch passes, and a lasting rise is judged as a stretch.
//  - elevated: the fast average above baseline + sustained_margin. A stretch of sustained_steps
//    elevated steps is judged once: a "sustained_spike" if corroborate() was called during it,
//    if it is still growing (its rise grew by more than half the margin since the stretch's
//    middle) or if the rise exceeds level_shift_max_rise; otherwise a kLevelShift detection
//    (anomaly = false) and the baseline is re-seeded with the stretch's losses (it follows).
// A sustained spike is reported every step while it lasts, with the stretch's onset. When a
// point spike and a sustained spike hold, the sustained spike is reported.
class LossSpikeDetector {
 public:
  // uniform_loss: ln(vocab size), the loss of a uniform guess; 0 = unknown (no absolute check).
  explicit LossSpikeDetector(const StabilityConfig& config, double uniform_loss = 0);

  // Judges the loss and advances the fast average and the elevated stretch.
  Detection observe(int64_t step, double loss);
  // Another detector found an anomaly at the step observe() judges next.
  void corroborate() { step_corroborated_ = true; }
  // Whether the last observed loss left the fast average above baseline + sustained_margin.
  // Elevated losses are not healthy baseline material even before they are judged.
  bool elevated() const { return elevated_; }
  int64_t sustained_run() const { return run_length_; }
  double fast_average() const { return fast_; }
  // The losses of the stretch that was just judged a level shift (oldest first).
  const std::vector<double>& shift_values() const { return stretch_; }

  void learn(int64_t step, double loss);
  // Replaces the baseline (oldest first) and forgets any elevated stretch.
  void rebuild(const std::vector<double>& losses);
  const RobustZScore& baseline() const { return losses_; }

  nlohmann::json to_json() const;
  bool from_json(const nlohmann::json& j);

 private:
  void end_stretch();

  StabilityConfig config_;
  double uniform_loss_;
  RobustZScore losses_;
  double fast_alpha_;
  double fast_ = 0;
  bool have_fast_ = false;
  bool elevated_ = false;
  int64_t run_length_ = 0;
  int64_t run_start_step_ = -1;
  double mid_rise_ = 0;  // the fast average's rise when the stretch was half judged
  bool corroborated_ = false;
  bool step_corroborated_ = false;  // corroborate() before this observe()
  int64_t last_corroborated_step_ = -1;
  bool judged_sustained_ = false;  // the stretch was judged a sustained spike: report while it lasts
  std::vector<double> stretch_;  // the stretch's raw losses
};

// Update-to-weight ratio: above update_ratio_ceiling (from step 0; off when 0), or a jump: at
// least update_ratio_min_factor x its baseline with a log-space z above grad_z_threshold (the
// effective LR changed suddenly, e.g. a new train.lr on resume). The ratio of a step is that of
// the previous applied update; 0 (not measured) is never judged.
class UpdateRatioDetector {
 public:
  explicit UpdateRatioDetector(const StabilityConfig& config);
  Detection observe(int64_t step, double update_ratio) const;
  void learn(int64_t step, double update_ratio);
  void rebuild(const std::vector<double>& ratios);
  const RobustZScore& baseline() const { return log_ratios_; }

  nlohmann::json to_json() const { return log_ratios_.to_json(); }
  bool from_json(const nlohmann::json& j) { return log_ratios_.from_json(j); }

 private:
  StabilityConfig config_;
  RobustZScore log_ratios_;
};

}  // namespace keel
