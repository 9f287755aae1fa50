// The vocabulary of stability events: what a detector or the monitor can report (kinds) and what
// the monitor did about it (actions). One name for one thing: the trainer, events.jsonl, the
// coordinator's events, `keel compare` and the benchmarks all use these strings. Torch-free.
#pragma once

namespace keel::event_kind {

// Detections (one step's verdict).
inline constexpr const char* kNonFinite = "nonfinite";            // NaN/inf loss or gradients
inline constexpr const char* kGradExplosion = "grad_explosion";   // grad norm vs baseline or ceiling
inline constexpr const char* kLossSpike = "loss_spike";           // one step's loss far above baseline
inline constexpr const char* kSustainedSpike = "sustained_spike"; // elevated loss, corroborated or growing
inline constexpr const char* kUpdateRatio = "update_ratio";       // update/weight ratio jump or ceiling
// Progress (the run as a whole).
inline constexpr const char* kFlatLoss = "flat_loss";    // loss not below the unigram entropy
inline constexpr const char* kStalled = "stalled";       // no progress over stall_tokens
inline constexpr const char* kValRising = "val_rising";  // validation loss rising, train flat
// The monitor's own conclusions.
inline constexpr const char* kLrTooHigh = "lr_too_high";  // a spike returned after a rollback
inline constexpr const char* kRecovered = "recovered";    // suspect -> healthy
inline constexpr const char* kLrProbe = "lr_probe";       // an LR range test chose the restart's LR
// Not an event (never in events.jsonl): the loss baseline followed a change of level that
// nothing corroborated; logged and marked in metrics.jsonl ("baseline_shift").
inline constexpr const char* kLevelShift = "level_shift";
// Lifecycle events (a launcher or supervisor announcing what happened to the job).
inline constexpr const char* kLifecycleRollback = "rollback";
inline constexpr const char* kLifecycleAbort = "abort";
inline constexpr const char* kLifecycleRestart = "restart";

}  // namespace keel::event_kind

namespace keel::event_action {

// The policy's actions (stability/policy.h to_string(Action)).
inline constexpr const char* kApply = "apply";
inline constexpr const char* kSkipUpdate = "skip_update";
inline constexpr const char* kRollback = "rollback";
inline constexpr const char* kRemedyRestart = "remedy_restart";
inline constexpr const char* kAbort = "abort";
// What an event led to in the modes that do not act, and for run-level warnings.
inline constexpr const char* kObserve = "observe";  // observe mode: recorded, nothing done
inline constexpr const char* kClip = "clip";        // clip_only: the gradient was clipped
inline constexpr const char* kWarn = "warn";        // a run-level warning (stalled, val_rising, ...)
inline constexpr const char* kLowerLr = "lower_lr";  // lr_too_high: the rest of the run trains at a lower LR

}  // namespace keel::event_action
