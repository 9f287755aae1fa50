// Loading and validation of RunConfig (see run_config.h).
#include "worker/run_config.h"

#include <filesystem>

namespace keel {
namespace {
void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}
}  // namespace

void TrainConfig::validate() const {
  require(steps >= 1, "train.steps must be >= 1");
  require(batch_size >= 1, "train.batch_size must be >= 1");
  require(seq_len >= 0, "train.seq_len must be >= 0");
  require(grad_accum >= 1, "train.grad_accum must be >= 1");
  require(lr > 0, "train.lr must be > 0");
  require(min_lr_ratio >= 0 && min_lr_ratio <= 1, "train.min_lr_ratio must be in [0, 1]");
  require(warmup_steps >= 0, "train.warmup_steps must be >= 0");
  require(weight_decay >= 0, "train.weight_decay must be >= 0");
  require(weight_decay_mode != "independent" || weight_decay < 1,
          "train.weight_decay must be < 1 with weight_decay_mode=independent (the fraction of each weight "
          "removed per step at the peak LR)");
  require(decay_fraction > 0 && decay_fraction <= 1, "train.decay_fraction must be in (0, 1]");
  require(z_loss >= 0, "train.z_loss must be >= 0");
  require(beta1 >= 0 && beta1 < 1, "train.beta1 must be in [0, 1)");
  require(beta2 >= 0 && beta2 < 1, "train.beta2 must be in [0, 1)");
  require(eps > 0, "train.eps must be > 0");
  require(grad_clip >= 0, "train.grad_clip must be >= 0");
  require(eval_every >= 0, "train.eval_every must be >= 0");
  require(eval_batches >= 1, "train.eval_batches must be >= 1");
  require(log_every >= 1, "train.log_every must be >= 1");
  require(stop_at == -1 || stop_at >= 1, "train.stop_at must be -1 or >= 1");
  require(threads >= 0, "train.threads must be >= 0");
}

void CheckpointConfig::validate() const {
  require(every >= 0, "checkpoint.every must be >= 0");
  require(keep >= 1, "checkpoint.keep must be >= 1");
}

// A name that becomes one folder name under runs_root: no separators, no parent references, no
// control characters, not hidden.
static bool plain_folder_name(const std::string& name) {
  if (name.size() > 200 || name.find('/') != std::string::npos || name.find('\\') != std::string::npos) return false;
  if (!name.empty() && name.front() == '.') return false;  // ".", "..", hidden folders
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

void RunSection::validate() const {
  // Run names (and recipes, which name run folders "<recipe>-<timestamp>") become folder names
  // under runs_root, so neither may reach outside it.
  require(plain_folder_name(name), "run.name '" + name + "' must be a plain folder name (no '/', not starting with '.')");
  require(plain_folder_name(recipe), "run.recipe '" + recipe + "' must be a plain name (no '/', not starting with '.')");
  require(!runs_root.empty(), "run.runs_root must not be empty");
}

std::vector<ConfigSectionRef> RunConfig::sections() {
  return {
      {"run", [this](ConfigVisitor& v) { run.visit(v); }},
      {"model", [this](ConfigVisitor& v) { model.visit(v); }},
      {"train", [this](ConfigVisitor& v) { train.visit(v); }},
      {"data", [this](ConfigVisitor& v) { data.visit(v); }},
      {"checkpoint", [this](ConfigVisitor& v) { checkpoint.visit(v); }},
      {"stability", [this](ConfigVisitor& v) { stability.visit(v); }},
      {"diagnostics", [this](ConfigVisitor& v) { diagnostics.visit(v); }},
      {"parallel", [this](ConfigVisitor& v) { parallel.visit(v); }},
      {"metrics", [this](ConfigVisitor& v) { metrics.visit(v); }},
      {"coordinator", [this](ConfigVisitor& v) { coordinator.visit(v); }},
      {"debug", [this](ConfigVisitor& v) { debug.visit(v); }},
  };
}

void RunConfig::validate() const {
  // No double field may hold inf or nan (the YAML reader refuses them; this catches values set by
  // code). sections() hands out mutable visitors; FiniteChecker only reads.
  require_finite(const_cast<RunConfig*>(this)->sections());
  run.validate();
  model.validate();
  train.validate();
  data.validate();
  checkpoint.validate();
  stability.validate();
  diagnostics.validate();
  parallel.validate();
  metrics.validate();
  coordinator.validate();
  for (const auto& [what, total] : {std::pair<const char*, int64_t>{"model.num_heads", model.num_heads},
                                    {"model.vocab_size", model.vocab_size},
                                    {"the MLP hidden width", model.mlp_hidden_width()}}) {
    require(total % parallel.tp == 0, std::string(what) + " (" + std::to_string(total) +
                                          ") must be divisible by parallel.tp (" + std::to_string(parallel.tp) +
                                          ") for tensor parallelism");
  }
  require(seq_len() <= model.context_length,
          "train.seq_len (" + std::to_string(seq_len()) + ") exceeds model.context_length (" +
              std::to_string(model.context_length) + ")");
  require(data.vocab_size <= model.vocab_size,
          "data.vocab_size (" + std::to_string(data.vocab_size) + ") exceeds model.vocab_size (" +
              std::to_string(model.vocab_size) + ")");
}

std::string RunConfig::to_yaml() { return keel::to_yaml(sections()); }

RunConfig RunConfig::load(const std::string& config_path, const std::vector<std::string>& overrides) {
  RunConfig config;
  auto refs = config.sections();
  if (!config_path.empty()) apply_yaml_file(refs, config_path);
  for (const auto& assignment : overrides) apply_override(refs, assignment);
  if (config.run.recipe.empty() && !config_path.empty())
    config.run.recipe = std::filesystem::path(config_path).stem().string();
  config.validate();
  return config;
}

}  // namespace keel
