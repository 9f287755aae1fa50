// Validation and description of the `stability` and `debug` config sections (see
// stability_config.h). Errors name the key so a user can fix the file or the --set override.
#include "stability/stability_config.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace keel {
namespace {

// Throws ConfigError "<section>.<key> must be <requirement> (got <value>)" unless ok.
template <typename T>
void require(bool ok, const char* section, const char* key, const char* requirement, const T& value) {
  if (ok) return;
  std::ostringstream s;
  s << section << "." << key << " must be " << requirement << " (got " << value << ")";
  throw ConfigError(s.str());
}

}  // namespace

void StabilityConfig::validate() const {
  const char* S = "stability";
  require(warmup_steps >= 0, S, "warmup_steps", ">= 0", warmup_steps);
  require(window >= 8, S, "window", ">= 8", window);
  require(method == "median_mad" || method == "ema", S, "method", "median_mad or ema", method);
  require(ema_beta > 0.0 && ema_beta < 1.0, S, "ema_beta", "in (0, 1)", ema_beta);
  require(grad_z_threshold > 0.0, S, "grad_z_threshold", "> 0", grad_z_threshold);
  require(grad_min_factor >= 1.0, S, "grad_min_factor", ">= 1", grad_min_factor);
  require(grad_norm_ceiling >= 0.0, S, "grad_norm_ceiling", ">= 0 (0 = off)", grad_norm_ceiling);
  require(loss_z_threshold > 0.0, S, "loss_z_threshold", "> 0", loss_z_threshold);
  require(loss_min_rise >= 0.0, S, "loss_min_rise", ">= 0", loss_min_rise);
  require(sustained_steps >= 1, S, "sustained_steps", ">= 1", sustained_steps);
  require(sustained_margin > 0.0, S, "sustained_margin", "> 0", sustained_margin);
  require(suspect_clip_scale > 0.0 && suspect_clip_scale <= 1.0, S, "suspect_clip_scale",
          "in (0, 1]", suspect_clip_scale);
  require(suspect_steps_to_rollback >= 1, S, "suspect_steps_to_rollback", ">= 1",
          suspect_steps_to_rollback);
  require(suspect_recover_steps >= 1, S, "suspect_recover_steps", ">= 1", suspect_recover_steps);
  require(skip_batches_after_rollback >= -1, S, "skip_batches_after_rollback", ">= -1",
          skip_batches_after_rollback);
  require(lr_cooldown_steps >= 0, S, "lr_cooldown_steps", ">= 0", lr_cooldown_steps);
  require(lr_cooldown_factor > 0.0 && lr_cooldown_factor <= 1.0, S, "lr_cooldown_factor",
          "in (0, 1]", lr_cooldown_factor);
  require(max_rollbacks >= 0, S, "max_rollbacks", ">= 0", max_rollbacks);
  require(rollback_window_steps >= 1, S, "rollback_window_steps", ">= 1", rollback_window_steps);
  require(on_repeated_spikes == "rollback" || on_repeated_spikes == "remedy_restart" ||
              on_repeated_spikes == "abort",
          S, "on_repeated_spikes", "rollback, remedy_restart or abort", on_repeated_spikes);
  require(remedy_restart_before_step >= 0, S, "remedy_restart_before_step", ">= 0",
          remedy_restart_before_step);
  require(guard_steps >= 1, S, "guard_steps", ">= 1", guard_steps);
  require(guard_steps > sustained_steps, S, "guard_steps",
          "> stability.sustained_steps (a sustained spike is recognized that late)", guard_steps);
  require(update_ratio_ceiling >= 0.0, S, "update_ratio_ceiling", ">= 0 (0 = off)",
          update_ratio_ceiling);
  require(mode == "rollback" || mode == "skip_only" || mode == "clip_only" || mode == "observe", S,
          "mode", "rollback, skip_only, clip_only or observe", mode);
  require(window_tokens >= 0, S, "window_tokens", ">= 0 (0 = use window)", window_tokens);
  require(sustained_tokens >= 0, S, "sustained_tokens", ">= 0 (0 = use sustained_steps)", sustained_tokens);
  require(std::isfinite(loss_over_uniform) && loss_over_uniform >= 0.0, S, "loss_over_uniform",
          ">= 0 (0 = off)", loss_over_uniform);
  require(level_shift_max_rise > sustained_margin, S, "level_shift_max_rise",
          "> stability.sustained_margin", level_shift_max_rise);
  require(update_ratio_min_factor >= 1.0, S, "update_ratio_min_factor", ">= 1", update_ratio_min_factor);
  require(lr_backoff > 0.0 && lr_backoff <= 1.0, S, "lr_backoff", "in (0, 1]", lr_backoff);
  require(restart_lr_backoff > 0.0 && restart_lr_backoff <= 1.0, S, "restart_lr_backoff", "in (0, 1]",
          restart_lr_backoff);
  require(restart_warmup_fraction >= 0.0 && restart_warmup_fraction <= 1.0, S, "restart_warmup_fraction",
          "in [0, 1] (0 = off)", restart_warmup_fraction);
  require(restart_warmup_max_fraction >= restart_warmup_fraction && restart_warmup_max_fraction <= 1.0, S,
          "restart_warmup_max_fraction", "in [stability.restart_warmup_fraction, 1]", restart_warmup_max_fraction);
  require(lr_probe_steps == -1 || lr_probe_steps == 0 || lr_probe_steps >= 2, S, "lr_probe_steps",
          ">= 2 (0 = auto, -1 = off)", lr_probe_steps);
  require(lr_probe_span_decades > 0.0 && lr_probe_span_decades <= 8.0, S, "lr_probe_span_decades", "in (0, 8]",
          lr_probe_span_decades);
  require(lr_probe_divisor >= 1.0 && std::isfinite(lr_probe_divisor), S, "lr_probe_divisor", ">= 1", lr_probe_divisor);
  require(lr_probe_divergence > 0.0 && std::isfinite(lr_probe_divergence), S, "lr_probe_divergence", "> 0",
          lr_probe_divergence);
  require(flat_after_tokens >= 0, S, "flat_after_tokens", ">= 0 (0 = auto)", flat_after_tokens);
  require(std::isfinite(flat_margin), S, "flat_margin", "finite", flat_margin);
  require(stall_tokens >= 0, S, "stall_tokens", ">= 0 (0 = auto)", stall_tokens);
  require(stall_min_drop >= 0.0 && std::isfinite(stall_min_drop), S, "stall_min_drop", ">= 0", stall_min_drop);
  require(val_rise_evals >= 2, S, "val_rise_evals", ">= 2", val_rise_evals);
  require(val_rise_margin >= 0.0 && std::isfinite(val_rise_margin), S, "val_rise_margin", ">= 0", val_rise_margin);
  require(on_flat == "restart" || on_flat == "abort" || on_flat == "warn", S, "on_flat",
          "restart, abort or warn", on_flat);
  require(clip_z_threshold > 0.0 && std::isfinite(clip_z_threshold), S, "clip_z_threshold", "> 0",
          clip_z_threshold);
}

StabilityConfig StabilityConfig::resolved(int64_t tokens_per_step) const {
  StabilityConfig r = *this;
  if (tokens_per_step <= 0) return r;
  auto steps_of = [tokens_per_step](int64_t tokens) { return (tokens + tokens_per_step - 1) / tokens_per_step; };
  if (window_tokens > 0) r.window = std::max<int64_t>(kMinWindowSteps, steps_of(window_tokens));
  if (sustained_tokens > 0) r.sustained_steps = std::max<int64_t>(kMinSustainedSteps, steps_of(sustained_tokens));
  // A checkpoint is confirmed only after a sustained spike could have been recognized.
  r.guard_steps = std::max(r.guard_steps, r.sustained_steps + 1);
  return r;
}

void DebugConfig::validate() const {
  const char* S = "debug";
  require(inject_nan_grad_at >= -1, S, "inject_nan_grad_at", ">= -1 (-1 = off)", inject_nan_grad_at);
  require(inject_lr_spike_at >= -1, S, "inject_lr_spike_at", ">= -1 (-1 = off)", inject_lr_spike_at);
  require(inject_lr_spike_factor > 0.0, S, "inject_lr_spike_factor", "> 0", inject_lr_spike_factor);
  require(inject_lr_spike_steps >= 1, S, "inject_lr_spike_steps", ">= 1", inject_lr_spike_steps);
  require(inject_bad_batch_at >= -1, S, "inject_bad_batch_at", ">= -1 (-1 = off)",
          inject_bad_batch_at);
}

bool DebugConfig::any_enabled() const {
  return inject_nan_grad_at >= 0 || inject_lr_spike_at >= 0 || inject_bad_batch_at >= 0;
}

std::string DebugConfig::describe() const {
  if (!any_enabled()) return "";
  std::ostringstream s;
  s << "!!! FAULT INJECTION IS ON: this is a test run, not a real training run !!!";
  if (inject_nan_grad_at >= 0) s << "\n  - NaN gradients at step " << inject_nan_grad_at;
  if (inject_lr_spike_at >= 0) {
    s << "\n  - LR x" << inject_lr_spike_factor << " for " << inject_lr_spike_steps
      << " steps from step " << inject_lr_spike_at;
  }
  if (inject_bad_batch_at >= 0) s << "\n  - corrupted batch at step " << inject_bad_batch_at;
  return s.str();
}

}  // namespace keel
