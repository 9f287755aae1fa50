// JSON and text forms of stability events, and the abort report (see stability_event.h).
#include "stability/stability_event.h"

#include <sstream>

#include "stability/json_doubles.h"

namespace keel {

nlohmann::json StabilityEvent::to_json() const {
  using stability_json::encode;
  return {{"kind", kind},
          {"step", step},
          {"action", action},
          {"reason", reason},
          {"checkpoint_step", checkpoint_step},
          {"onset_step", onset_step},
          {"value", encode(value)},
          {"baseline", encode(baseline)},
          {"z", encode(z)},
          {"loss_window", encode(loss_window)},
          {"grad_norm_window", encode(grad_norm_window)}};
}

std::string format_values(const std::vector<double>& values, size_t max_values) {
  std::ostringstream s;
  s.precision(5);
  s << "[";
  size_t start = values.size() > max_values ? values.size() - max_values : 0;
  if (start > 0) s << "..., ";
  for (size_t i = start; i < values.size(); ++i) s << (i > start ? ", " : "") << values[i];
  s << "]";
  return s.str();
}

std::string abort_report(const AbortReportInput& in) {
  std::ostringstream m;
  if (in.action == Action::kRemedyRestart) {
    m << "Stability monitor requests a restart from scratch with a remedy at step " << in.step << ".\n";
  } else {
    m << "Stability monitor aborted the run at step " << in.step << " (exit code " << kStabilityAbortExitCode << ").\n";
  }
  m << "  Why: " << in.policy_reason << ".\n";
  for (const Detection& d : in.anomalies) {
    m << "  Trigger: " << d.kind << " at step " << d.step;
    if (d.onset_step != d.step) m << " (onset " << d.onset_step << ")";
    m << ": " << d.reason << "\n";
  }
  m << "  Rollbacks within the last " << in.rollback_window_steps << " executed steps: "
    << in.rollbacks_in_window << " (max_rollbacks = " << in.max_rollbacks << ")";
  for (size_t i = 0; i < in.rollbacks.size(); ++i) {
    m << (i == 0 ? ": " : ", ") << "at step " << in.rollbacks[i].step << " (onset "
      << in.rollbacks[i].onset_step << ")";
  }
  m << "\n  Recent loss: " << format_values(in.recent_loss, 16)
    << "\n  Recent grad norm: " << format_values(in.recent_grad_norm, 16) << "\n";
  if (in.last_good_checkpoint) m << "  Last good checkpoint: step " << *in.last_good_checkpoint << "\n";
  m << "  What to try: a lower peak learning rate (e.g. halve train.lr) or a longer "
       "train.warmup_steps; the scaled-embed recipe (model.embed_scale=sqrt_d model.init=small, "
       "Spike No More) or embed-ln (model.embed_norm=layernorm); a tighter train.grad_clip; if the "
       "spikes begin at the same data position each time, inspect that data (onset steps above).";
  if (in.action == Action::kAbort && in.last_good_checkpoint) {
    m << " Then resume from the last good checkpoint.";
  }
  return m.str();
}

}  // namespace keel
