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
  // What the monitor does with its verdicts (one policy per run, so runs can be compared):
  //  - rollback:  skip suspect updates, roll back to the last good checkpoint on a confirmed
  //               spike, escalate on every retry (lower LR, tighter clipping, longer cool-down)
  //               and restart at a lower LR when the run never learns (the default);
  //  - skip_only: llm.c's behaviour: skip the update of an anomalous step, never roll back;
  //               the baselines keep learning, so a lasting change of level is absorbed; an
  //               absolute verdict (loss above uniform, the ceiling) skips at most
  //               suspect_steps_to_rollback steps in a row;
  //  - clip_only: adaptive clipping a la ZClip: never skip a finite update, clip an exploding
  //               gradient to the baseline's upper band (clip_z_threshold);
  //  - observe:   record every verdict and act on none (a non-finite update is still skipped).
  std::string mode = "rollback";
  // The first steps' values do not enter the baselines: the loss falls fastest and gradients are
  // largest there, and they would only inflate the scale. Non-finite values and the absolute
  // ceilings (grad_norm_ceiling, update_ratio_ceiling, the loss above ln(vocab)) are judged from
  // step 0; statistical verdicts start as soon as a baseline holds enough healthy values.
  int64_t warmup_steps = 10;
  // Length of the rolling baseline window (healthy steps). With window_tokens > 0 and a known
  // batch size the window is window_tokens / tokens per step instead (at least 32 steps).
  int64_t window = 100;
  int64_t window_tokens = 102400;
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
  // Gradient-norm explosion: an absolute ceiling on the global grad norm, from step 0; 0 = off.
  double grad_norm_ceiling = 100.0;
  // Loss spike: z-score of the loss above this (and a rise above loss_min_rise) is an anomaly.
  double loss_z_threshold = 6.0;
  // Loss spike: minimum absolute rise over the baseline, so a near-constant window (tiny MAD)
  // cannot turn a negligible wiggle into a spike.
  double loss_min_rise = 0.1;
  // From step 0: a loss more than this above ln(vocab size) (worse than guessing uniformly) is a
  // spike; 0 = off.
  double loss_over_uniform = 1.0;
  // Elevated loss: the fast loss average (an EMA over sustained_steps / 4 steps) above the slow
  // baseline + sustained_margin. Held for sustained_steps consecutive steps (sustained_tokens /
  // tokens per step when set, at least 8 steps) it is judged: a sustained spike (instability) if
  // it is corroborated (a gradient explosion, update-ratio jump or non-finite value during the
  // stretch), still growing (by more than half the margin over its second half) or larger than
  // level_shift_max_rise; otherwise a level shift that the baselines follow (a change of data
  // domain, not instability).
  int64_t sustained_steps = 20;
  int64_t sustained_tokens = 20480;
  double sustained_margin = 0.2;
  double level_shift_max_rise = 1.0;
  // Update-ratio jump: the update/weight ratio at least this many times its baseline with a
  // log-space z above grad_z_threshold is an anomaly (a sudden change of the effective LR).
  double update_ratio_min_factor = 4.0;
  // Update/weight ratio above this is an anomaly from step 0; 0 = off.
  double update_ratio_ceiling = 0.0;
  // While suspect, the trainer multiplies its gradient-clipping threshold by this.
  double suspect_clip_scale = 0.5;
  // Consecutive anomalous steps that escalate suspect -> rollback.
  int64_t suspect_steps_to_rollback = 3;
  // Consecutive clean steps that return suspect -> healthy.
  int64_t suspect_recover_steps = 10;
  // Roll back at once on a sustained spike (otherwise it escalates like any other anomaly).
  bool rollback_on_sustained = true;
  // Batches to discard after restoring a rollback checkpoint, counted from the checkpoint's data
  // position. -1 = continue from the data position right after the onset step's batch, i.e. skip
  // exactly the data this timeline consumed up to and including the onset (a later rollback to
  // the same checkpoint then skips further, never re-feeding what an earlier one skipped).
  int64_t skip_batches_after_rollback = -1;
  // After rollback k (k-th within rollback_window_steps) the LR is multiplied by a factor ramping
  // linearly from lr_cooldown_factor^k back to 1 over k x lr_cooldown_steps steps, and the clip
  // threshold by suspect_clip_scale^(k-1) meanwhile: every retry is gentler than the last.
  // 0 steps turns the cooldown off.
  int64_t lr_cooldown_steps = 100;
  double lr_cooldown_factor = 0.5;
  // A spike that returns after a rollback (on data the rollback did not replay), or a failure
  // before any good checkpoint (the run restarts from its initial state), is a setting, not the
  // data: the LR is too high. The rest of the run then trains at LR x lr_backoff (cumulative).
  double lr_backoff = 0.3;
  // A failure before anything good existed (a restart from the initial state, after an explosion
  // in the first steps or a run that never learned) trains on at restart_lr_backoff x the LR that
  // failed: the LR in effect at the failure's onset (below the peak when it came during the
  // warm-up), at most the current scale, and at least restart_lr_backoff^2 x the current scale
  // (a failure in the first steps of a warm-up says little about the peak). The same factor as
  // lr_backoff by default: on the CPU calibration (vanilla at LR 3e-2, no warm-up) x0.1 exploded
  // again where x0.3 did not, and on the H200 x0.3 twice rescued LR 2e-2.
  double restart_lr_backoff = 0.3;
  // restart_warmup_fraction > 0: a restart from the initial state also lengthens a missing or
  // short LR warm-up (the classic cause of an early failure): the restarted run warms its LR up
  // linearly from 0 over
  //   max(the failed try's warm-up, 2 / (1 - adam beta2) steps (the "untuned warm-up" of Ma &
  //       Yarats 2019: 40 steps at beta2 = 0.95), restart_warmup_fraction of the run),
  // each further restart over twice the previous one, never more than
  // restart_warmup_max_fraction of the run (unless the failed try already warmed up longer); the
  // cooldown of the rollback applies on top. Off (0) by default: on the CPU bench (2026-12-07) a
  // warm-up made the restarted runs of vanilla at LR 3e-2 and 1e-1 stable at an LR still 10-30x
  // too high, where they collapse quietly to the unigram level instead of failing again, and the
  // failures that returned were what drove the LR down to one that learns (1e-1 without warm-up:
  // 7.07 with the warm-up, 6.74 without; healthy 6.81). A warm-up hides the symptom, the LR is
  // the cause. For runs whose LR is known to be right.
  double restart_warmup_fraction = 0.0;
  double restart_warmup_max_fraction = 0.3;
  // A failure before anything good existed in a model with normalisation layers: instead of the
  // fixed cut above, the monitor measures (stability/lr_probe.h). It restarts from the initial
  // state and trains lr_probe_steps steps (0 = auto: 10% of the run, 12 to 50 steps; -1 = off,
  // the fixed cut) with the LR rising geometrically over lr_probe_span_decades decades up to the
  // LR that failed; at the first divergence (the smoothed loss lr_probe_divergence nats above its
  // best, or a non-finite value) or at the end it restarts once more, at the LR of the lowest
  // smoothed loss / lr_probe_divisor. Once per run; a failure after that is cut by lr_backoff.
  // Measured on the CPU bench (2026-12-07): the runs that failed early at 20-100x the healthy LR
  // settled 0.1-0.4 nats above the healthy run with the fixed cut.
  int64_t lr_probe_steps = 0;
  double lr_probe_span_decades = 3.0;
  double lr_probe_divisor = 10.0;
  double lr_probe_divergence = 0.5;
  // At most max_rollbacks rollbacks within rollback_window_steps executed steps (replayed steps
  // count); the next one follows on_repeated_spikes.
  int64_t max_rollbacks = 3;
  int64_t rollback_window_steps = 1000;
  // When rollbacks are exhausted (or there is no checkpoint to roll back to): "abort" (exit code
  // 3), "remedy_restart" (restart from scratch with the Spike No More remedy at a lower LR, as a
  // child run; once, and only for a spike before remedy_restart_before_step, else abort) or
  // "rollback" (keep rolling back without a limit).
  std::string on_repeated_spikes = "abort";
  int64_t remedy_restart_before_step = 2000;
  // A checkpoint becomes "good" once guard_steps steps after it passed with no anomaly. Must
  // exceed sustained_steps (a sustained spike is recognized that many steps after its onset).
  int64_t guard_steps = 50;
  // Flat failure: a run that never learns. Once flat_after_tokens tokens were trained (0 = 30% of
  // the run, at most 50M tokens, never before twice the LR warm-up, 100 steps or 250k tokens), a loss
  // (its slow average) not below the data's unigram entropy minus flat_margin is a "flat_loss" failure: the model predicts no better than token
  // frequencies. A loss still clearly falling then is only a warning (the LR may be too low, or
  // a restart at a lowered LR is still catching up): restarting it again would only slow it more.
  // Needs the entropy (meta.json of `keel prepare`, or computed from the shards).
  int64_t flat_after_tokens = 0;
  double flat_margin = 0.05;
  // No progress: the slow loss average fell by less than stall_min_drop over the last
  // stall_tokens tokens (0 = 25% of the run) is a "stalled" event.
  int64_t stall_tokens = 0;
  double stall_min_drop = 0.01;
  // Validation loss rising over val_rise_evals consecutive evaluations by more than
  // val_rise_margin in all while the training loss is flat or falling: a "val_rising" event.
  int64_t val_rise_evals = 3;
  double val_rise_margin = 0.05;
  // What a flat_loss failure does: "restart" (rollback mode: back to the initial state at LR x
  // restart_lr_backoff, counted as a rollback), "abort" (exit code 3 with advice) or "warn" (event only).
  // A stalled run and a rising validation loss are always events only (warn).
  std::string on_flat = "restart";
  // clip_only: an exploding gradient (log-space z above this) is clipped to the baseline's
  // center + clip_z_threshold scales (ZClip's z-score clipping).
  double clip_z_threshold = 2.5;

  void visit(ConfigVisitor& v) {
    v.field("enabled", enabled, "run the stability monitor");
    v.choice("mode", mode, {"rollback", "skip_only", "clip_only", "observe"},
             "what the monitor does with its verdicts");
    v.field("warmup_steps", warmup_steps, "the first steps' values do not enter the baselines");
    v.field("window", window, "rolling baseline window length (healthy steps)");
    v.field("window_tokens", window_tokens, "baseline window in tokens (0 = use window)");
    v.choice("method", method, {"median_mad", "ema"}, "baseline statistics");
    v.field("ema_beta", ema_beta, "EMA decay for method=ema");
    v.field("grad_z_threshold", grad_z_threshold, "z of log(grad norm) that is an explosion");
    v.field("grad_min_factor", grad_min_factor, "an explosion is also at least this many times the baseline norm");
    v.field("grad_norm_ceiling", grad_norm_ceiling, "absolute grad-norm ceiling from step 0 (0 = off)");
    v.field("loss_z_threshold", loss_z_threshold, "loss z-score that is a spike");
    v.field("loss_min_rise", loss_min_rise, "minimum absolute loss rise for a spike");
    v.field("loss_over_uniform", loss_over_uniform, "a loss this far above ln(vocab) is a spike (0 = off)");
    v.field("sustained_steps", sustained_steps, "steps of elevated loss that are judged (sustained or level shift)");
    v.field("sustained_tokens", sustained_tokens, "the same in tokens (0 = use sustained_steps)");
    v.field("sustained_margin", sustained_margin, "margin over the baseline (loss units)");
    v.field("level_shift_max_rise", level_shift_max_rise, "a held rise above this is never a level shift");
    v.field("update_ratio_min_factor", update_ratio_min_factor, "an update-ratio jump is at least this many times its baseline");
    v.field("update_ratio_ceiling", update_ratio_ceiling, "update/weight ratio ceiling (0 = off)");
    v.field("suspect_clip_scale", suspect_clip_scale, "clip threshold multiplier while suspect");
    v.field("suspect_steps_to_rollback", suspect_steps_to_rollback,
            "consecutive anomalous steps that escalate suspect to rollback");
    v.field("suspect_recover_steps", suspect_recover_steps,
            "consecutive clean steps that return suspect to healthy");
    v.field("rollback_on_sustained", rollback_on_sustained, "roll back at once on a sustained spike");
    v.field("skip_batches_after_rollback", skip_batches_after_rollback,
            "batches skipped after a rollback (-1 = all data consumed up to the onset)");
    v.field("lr_cooldown_steps", lr_cooldown_steps, "LR cooldown length after a rollback (x k for rollback k)");
    v.field("lr_cooldown_factor", lr_cooldown_factor, "LR multiplier at the start of the cooldown (^k for rollback k)");
    v.field("lr_backoff", lr_backoff, "persistent LR multiplier when the LR is diagnosed too high");
    v.field("restart_lr_backoff", restart_lr_backoff, "the same for a restart from the initial state");
    v.field("restart_warmup_fraction", restart_warmup_fraction,
            "a restart from the initial state warms the LR up over at least this share of the run (0 = off)");
    v.field("restart_warmup_max_fraction", restart_warmup_max_fraction,
            "the longest warm-up a restart adds, as a share of the run");
    v.field("lr_probe_steps", lr_probe_steps,
            "steps of the LR range test after an early failure (0 = auto, -1 = off: a fixed cut)");
    v.field("lr_probe_span_decades", lr_probe_span_decades, "decades below the failed LR the range test starts");
    v.field("lr_probe_divisor", lr_probe_divisor, "the restart trains at the range test's best LR / this");
    v.field("lr_probe_divergence", lr_probe_divergence, "smoothed-loss rise over its best that ends the range test");
    v.field("max_rollbacks", max_rollbacks, "rollbacks allowed within rollback_window_steps");
    v.field("rollback_window_steps", rollback_window_steps, "window for counting rollbacks");
    v.choice("on_repeated_spikes", on_repeated_spikes, {"rollback", "remedy_restart", "abort"},
             "what to do when rollbacks are exhausted");
    v.field("remedy_restart_before_step", remedy_restart_before_step,
            "remedy_restart only for spikes before this step");
    v.field("guard_steps", guard_steps, "clean steps after a checkpoint that make it good");
    v.field("flat_after_tokens", flat_after_tokens, "tokens after which the loss must be below the unigram entropy (0 = auto)");
    v.field("flat_margin", flat_margin, "how far below the unigram entropy the loss must be");
    v.field("stall_tokens", stall_tokens, "tokens over which the loss must fall by stall_min_drop (0 = auto)");
    v.field("stall_min_drop", stall_min_drop, "least loss drop over stall_tokens");
    v.field("val_rise_evals", val_rise_evals, "consecutive rising evaluations that are an event");
    v.field("val_rise_margin", val_rise_margin, "total validation rise that counts");
    v.choice("on_flat", on_flat, {"restart", "abort", "warn"}, "what a flat_loss failure does");
    v.field("clip_z_threshold", clip_z_threshold, "clip_only: clip gradients above this log-space z");
  }

  // Throws ConfigError naming "stability.<key>" for the first invalid field.
  void validate() const;
  // The step counts a run of `tokens_per_step` tokens per optimizer step uses: window and
  // sustained_steps from their token keys (when > 0), guard_steps raised past sustained_steps.
  // tokens_per_step <= 0 (unknown) keeps the step keys.
  StabilityConfig resolved(int64_t tokens_per_step) const;
};

// Floors of the token-derived step counts (a baseline and a sustained stretch need some steps).
constexpr int64_t kMinWindowSteps = 32;
constexpr int64_t kMinSustainedSteps = 8;

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
