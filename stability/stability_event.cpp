// JSON and text forms of stability events, and the abort report (see stability_event.h).
#include "stability/stability_event.h"

#include <sstream>

#include "common/exit_codes.h"
#include "stability/json_doubles.h"

namespace keel {

nlohmann::json StabilityEvent::to_json() const {
  using stability_json::encode;
  nlohmann::json j = {{"kind", kind},
          {"step", step},
          {"action", action},
          {"reason", reason},
          {"checkpoint_step", checkpoint_step},
          {"onset_step", onset_step},
          {"value", encode(value)},
          {"baseline", encode(baseline)},
          {"z", encode(z)},
          {"loss_window", encode(loss_window)},
          {"grad_norm_window", encode(grad_norm_window)},
          {"data", data.to_json()}};
  if (resume_data.known()) {
    j["resume_data"] = resume_data.to_json();
  }
  if (action == "rollback" || lr_scale != 1) {
    j["lr_scale"] = encode(lr_scale);
    j["cooldown_factor"] = encode(cooldown_factor);
    j["cooldown_steps"] = cooldown_steps;
  }
  return j;
}

nlohmann::json DataPosition::to_json() const {
  nlohmann::json j = {{"epoch", epoch},         {"shard", shard},           {"offset", offset},
                      {"next_epoch", next_epoch}, {"next_shard", next_shard}, {"next_offset", next_offset},
                      {"tokens", tokens},       {"crossed_shard", crossed_shard}, {"crossed_epoch", crossed_epoch}};
  if (document >= 0) {
    j["document"] = document;
    j["documents"] = documents;
  }
  if (!shard_name.empty()) j["shard_name"] = shard_name;
  return j;
}

DataPosition DataPosition::from_json(const nlohmann::json& j) {
  DataPosition p;
  p.epoch = j.at("epoch").get<int64_t>();
  p.shard = j.at("shard").get<int64_t>();
  p.offset = j.at("offset").get<int64_t>();
  p.next_epoch = j.at("next_epoch").get<int64_t>();
  p.next_shard = j.at("next_shard").get<int64_t>();
  p.next_offset = j.at("next_offset").get<int64_t>();
  p.tokens = j.at("tokens").get<int64_t>();
  p.crossed_shard = j.at("crossed_shard").get<bool>();
  p.crossed_epoch = j.at("crossed_epoch").get<bool>();
  p.document = j.value("document", int64_t{-1});
  p.documents = j.value("documents", int64_t{0});
  p.shard_name = j.value("shard_name", std::string());
  return p;
}

std::string DataPosition::describe() const {
  if (!known()) return "data position unknown";
  std::ostringstream s;
  s << "epoch " << epoch << ", shard " << shard;
  if (!shard_name.empty()) s << " (" << shard_name << ")";
  s << ", tokens " << offset << "-" << offset + tokens - 1;
  if (document >= 0) s << ", document " << document << " (+" << documents << " boundaries)";
  if (crossed_epoch) s << ", crossed an epoch boundary";
  else if (crossed_shard) s << ", crossed a shard boundary";
  return s.str();
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
    m << "Stability monitor aborted the run at step " << in.step << " (exit code " << kExitStabilityAbort << ").\n";
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
  if (in.last_good_checkpoint) {
    if (in.last_good_confirmed)
      m << "  Last good checkpoint: step " << *in.last_good_checkpoint << "\n";
    else
      m << "  No checkpoint is confirmed good yet; the newest with no anomaly after it: step "
        << *in.last_good_checkpoint << "\n";
  }
  if (in.normalization_missing) {
    m << "  Diagnosis: the model has no normalisation layers (model.norm = none) and its failure returned after "
         "the learning rate was cut to x"
      << in.lr_scale
      << ": lowering the LR further only delays it (and leaves the run too slow to learn). Add normalisation: "
         "model.norm=pre_ln (or rms); stability.on_repeated_spikes=remedy_restart restarts with it. To keep the "
         "recipe norm-free, a much lower learning rate and a longer train.warmup_steps.\n";
  } else if (in.lr_diagnosed_too_high) {
    m << "  Diagnosis: the learning rate is too high (the failure returned on other data after a rollback, or "
         "the run never learned from its initial state)";
    if (in.lr_scale != 1) m << "; the monitor already trained at LR x" << in.lr_scale << " and it still failed";
    m << ".\n";
  }
  if (in.normalization_missing) {
    m << "  Suggested: model.norm=pre_ln in a new run (a checkpoint cannot gain layers)";
    if (in.peak_lr > 0) m << "; norm-free, train.lr=" << in.peak_lr * in.lr_scale * in.lr_backoff;
    m << ".\n";
  } else if (in.peak_lr > 0) {
    m << "  Suggested: train.lr=" << in.peak_lr * in.lr_scale * in.lr_backoff << " (now " << in.peak_lr;
    if (in.lr_scale != 1) m << ", effectively " << in.peak_lr * in.lr_scale;
    m << ").\n";
  }
  m << "  What to try: a lower peak learning rate (e.g. halve train.lr) or a longer "
       "train.warmup_steps; the scaled-embed recipe (model.embed_scale=sqrt_d model.init=small, "
       "Spike No More) or embed-ln (model.embed_norm=layernorm); a tighter train.grad_clip; if the "
       "spikes begin at the same data position each time, inspect that data (onset steps above).";
  if (in.action == Action::kAbort && in.last_good_checkpoint) {
    m << " Then resume from " << (in.last_good_confirmed ? "the last good checkpoint" : "that checkpoint")
      << " with the changed settings: keel train ... --resume-from " << *in.last_good_checkpoint << ".";
  }
  return m.str();
}

}  // namespace keel
