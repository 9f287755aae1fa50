// Config sections of the stability monitor: `stability` (detection thresholds, the
// healthy/suspect/rollback policy, rollback limits and the LR cooldown) and `debug` (fault
// injection used to prove that the monitor works end to end).
//
// Both follow the typed-config pattern of common/config.h: a plain struct with documented
// defaults, `visit()` naming every field once, and `validate()` throwing keel::ConfigError that
// names the offending key ("stability.window ..."). Torch-free.
//
// Step convention used throughout stability/ (the trainer's): a checkpoint "at step C" holds the
// state after C completed steps, so a run resumed from it trains step C next (steps are 0-based),
// and the first loss computed with its weights is the loss observed at step C.
#pragma once

#include <cstdint>
#include <string>

#include "common/config.h"

namespace keel {

struct StabilityConfig {
  // Master switch. When false every step is applied, except that a non-finite update is still
  // skipped (it would destroy the weights and nobody wants that).
  bool enabled = true;
  // No statistical verdicts (z-scores, ceilings, sustained spikes) before this step. Non-finite
  // losses/gradients are judged from step 0. Baselines learn from step warmup_steps / 5 on: the
  // very first steps (loss falling fastest, largest gradients) would only inflate the scale.
  int64_t warmup_steps = 50;
  // Length of the rolling baseline window (healthy steps only).
  int64_t window = 100;
  // Baseline statistics: "median_mad" (rolling median and MAD, robust) or "ema" (bias-corrected
  // exponential moving mean and variance, cheaper and smoother).
  std::string method = "median_mad";
  // EMA decay when method = "ema".
  double ema_beta = 0.98;
  // Gradient-norm explosion: z-score of log(grad_norm) above this is an anomaly.
  double grad_z_threshold = 6.0;
  // An explosion must also be at least this many times the baseline norm: grad norms of a healthy run
  // jitter by 2-3x, and a z-score on a quiet baseline alone would flag that.
  double grad_min_factor = 4.0;
  // Gradient-norm explosion: an absolute ceiling on the global grad norm; 0 turns it off.
  double grad_norm_ceiling = 100.0;
  // Loss spike: z-score of the loss above this (and a rise above loss_min_rise) is an anomaly.
  double loss_z_threshold = 6.0;
  // Loss spike: minimum absolute rise over the baseline, so a near-constant window (tiny MAD)
  // cannot turn a negligible wiggle into a spike.
  double loss_min_rise = 0.1;
  // Sustained spike: loss above baseline + sustained_margin for this many consecutive steps.
  int64_t sustained_steps = 20;
  // Sustained spike: margin over the baseline, in loss units.
  double sustained_margin = 0.2;
  // While suspect, the trainer multiplies its gradient-clipping threshold by this.
  double suspect_clip_scale = 0.5;
  // Consecutive anomalous steps that escalate suspect -> rollback.
  int64_t suspect_steps_to_rollback = 3;
  // Consecutive clean steps that return suspect -> healthy.
  int64_t suspect_recover_steps = 10;
  // Roll back at once on a sustained spike (otherwise it escalates like any other anomaly).
  bool rollback_on_sustained = true;
  // Batches the data loader discards after restoring a rollback checkpoint, counted from the
  // checkpoint's data position: "skip the batches that led into the spike". -1 = exactly the
  // batches of steps checkpoint .. onset, the onset's own included (onset + 1 - checkpoint).
  int64_t skip_batches_after_rollback = -1;
  // After a rollback the LR is multiplied by a factor ramping linearly from lr_cooldown_factor
  // back to 1 over lr_cooldown_steps steps; 0 steps turns the cooldown off.
  int64_t lr_cooldown_steps = 100;
  double lr_cooldown_factor = 0.5;
  // At most max_rollbacks rollbacks within rollback_window_steps executed steps (replayed steps
  // count); the next one follows on_repeated_spikes.
  int64_t max_rollbacks = 3;
  int64_t rollback_window_steps = 1000;
  // When rollbacks are exhausted (or there is no checkpoint to roll back to): "abort" (exit code
  // 3), "remedy_restart" (restart from scratch with a remedy; once, and only for a spike before
  // remedy_restart_before_step, else abort) or "rollback" (keep rolling back without a limit).
  std::string on_repeated_spikes = "abort";
  int64_t remedy_restart_before_step = 2000;
  // A checkpoint becomes "good" once guard_steps steps after it passed with no anomaly. Must
  // exceed sustained_steps (a sustained spike is recognized that many steps after its onset).
  int64_t guard_steps = 50;
  // Update-to-weight ratio above this is an anomaly; 0 turns it off.
  double update_ratio_ceiling = 0.0;

  void visit(ConfigVisitor& v) {
    v.field("enabled", enabled, "run the stability monitor");
    v.field("warmup_steps", warmup_steps, "no statistical verdicts before this step");
    v.field("window", window, "rolling baseline window length (healthy steps)");
    v.choice("method", method, {"median_mad", "ema"}, "baseline statistics");
    v.field("ema_beta", ema_beta, "EMA decay for method=ema");
    v.field("grad_z_threshold", grad_z_threshold, "z of log(grad norm) that is an explosion");
    v.field("grad_min_factor", grad_min_factor, "an explosion is also at least this many times the baseline norm");
    v.field("grad_norm_ceiling", grad_norm_ceiling, "absolute grad-norm ceiling (0 = off)");
    v.field("loss_z_threshold", loss_z_threshold, "loss z-score that is a spike");
    v.field("loss_min_rise", loss_min_rise, "minimum absolute loss rise for a spike");
    v.field("sustained_steps", sustained_steps, "steps above baseline+margin = sustained spike");
    v.field("sustained_margin", sustained_margin, "margin over the baseline (loss units)");
    v.field("suspect_clip_scale", suspect_clip_scale, "clip threshold multiplier while suspect");
    v.field("suspect_steps_to_rollback", suspect_steps_to_rollback,
            "consecutive anomalous steps that escalate suspect to rollback");
    v.field("suspect_recover_steps", suspect_recover_steps,
            "consecutive clean steps that return suspect to healthy");
    v.field("rollback_on_sustained", rollback_on_sustained, "roll back at once on a sustained spike");
    v.field("skip_batches_after_rollback", skip_batches_after_rollback,
            "batches skipped after a rollback (-1 = checkpoint..onset)");
    v.field("lr_cooldown_steps", lr_cooldown_steps, "LR cooldown length after a rollback");
    v.field("lr_cooldown_factor", lr_cooldown_factor, "LR multiplier at the start of the cooldown");
    v.field("max_rollbacks", max_rollbacks, "rollbacks allowed within rollback_window_steps");
    v.field("rollback_window_steps", rollback_window_steps, "window for counting rollbacks");
    v.choice("on_repeated_spikes", on_repeated_spikes, {"rollback", "remedy_restart", "abort"},
             "what to do when rollbacks are exhausted");
    v.field("remedy_restart_before_step", remedy_restart_before_step,
            "remedy_restart only for spikes before this step");
    v.field("guard_steps", guard_steps, "clean steps after a checkpoint that make it good");
    v.field("update_ratio_ceiling", update_ratio_ceiling, "update/weight ratio ceiling (0 = off)");
  }

  // Throws ConfigError naming "stability.<key>" for the first invalid field.
  void validate() const;
};

// Fault injection (section "debug"). Every trigger is off (-1) by default; a run with any of them
// on is not a real training run and says so loudly.
struct DebugConfig {
  // Replace the gradients of this step with NaN.
  int64_t inject_nan_grad_at = -1;
  // Multiply the LR by inject_lr_spike_factor for inject_lr_spike_steps steps from this step.
  int64_t inject_lr_spike_at = -1;
  double inject_lr_spike_factor = 100.0;
  int64_t inject_lr_spike_steps = 5;
  // Feed a corrupted batch (e.g. shuffled or constant tokens) at this step.
  int64_t inject_bad_batch_at = -1;

  void visit(ConfigVisitor& v) {
    v.field("inject_nan_grad_at", inject_nan_grad_at, "step whose gradients become NaN (-1 = off)");
    v.field("inject_lr_spike_at", inject_lr_spike_at, "first step of an LR spike (-1 = off)");
    v.field("inject_lr_spike_factor", inject_lr_spike_factor, "LR multiplier during the spike");
    v.field("inject_lr_spike_steps", inject_lr_spike_steps, "length of the LR spike in steps");
    v.field("inject_bad_batch_at", inject_bad_batch_at, "step fed a corrupted batch (-1 = off)");
  }

  // Throws ConfigError naming "debug.<key>".
  void validate() const;
  bool any_enabled() const;
  // A loud warning listing every active injection ("" when none is on).
  std::string describe() const;

  // Per-step queries for the trainer.
  bool nan_grad_at(int64_t step) const { return inject_nan_grad_at >= 0 && step == inject_nan_grad_at; }
  bool bad_batch_at(int64_t step) const { return inject_bad_batch_at >= 0 && step == inject_bad_batch_at; }
  // The injected LR multiplier for this step (1 outside the spike).
  double lr_factor_at(int64_t step) const {
    bool in_spike = inject_lr_spike_at >= 0 && step >= inject_lr_spike_at &&
                    step < inject_lr_spike_at + inject_lr_spike_steps;
    return in_spike ? inject_lr_spike_factor : 1.0;
  }
};

}  // namespace keel
