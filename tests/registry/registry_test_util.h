// Handmade run directories for the registry tests.
#pragma once

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace keel::registry::testing {

// A fresh temporary folder, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "keel-registry-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void write(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

struct RunSpec {
  std::string recipe = "vanilla";
  int steps = 100;
  int val_every = 25;         // val loss at steps 24, 49, ... (never a multiple of 10)
  double lr = 0.01;
  std::string norm = "pre_ln";
  double embed_scale = 1.0;
  std::string status = "completed";
  bool with_run_info = true;
  int diagnostics_every = 0;  // > 0: the diag.* values of diagnostic_values() on steps every-1, 2*every-1, ...
  std::string extra_config;   // appended to config.yaml
};

// The diag.* values written at metrics step `step`: 2 layers x 3 heads, values that depend on the
// step so the last record is recognisable. Normalised entropies (layer, head): layer 0 = 0.95,
// 0.85, 0.5; layer 1 = 0.2, 0.92, 0.4 (+ step / 1e4 each); entropy = 2 x normalised.
inline nlohmann::json diagnostic_values(int step) {
  const double bump = step / 1e4;
  const double normalised[2][3] = {{0.95, 0.85, 0.5}, {0.2, 0.92, 0.4}};
  nlohmann::json d;
  d["diag.embedding_output_std"] = 0.5 + bump;
  d["diag.attention_entropy_overload_fraction"] = 2.0 / 6.0;
  for (int l = 0; l < 2; ++l) {
    const std::string p = "diag.layer" + std::to_string(l) + ".";
    for (int h = 0; h < 3; ++h) {
      d[p + "head" + std::to_string(h) + ".attention_normalised_entropy"] = normalised[l][h] + bump;
      d[p + "head" + std::to_string(h) + ".attention_entropy"] = 2 * (normalised[l][h] + bump);
    }
    d[p + "linearity"] = 0.9 + 0.05 * l + bump;
    d[p + "linearity_without_residual"] = 0.3 + 0.1 * l + bump;
    d[p + "mlp_sparsity"] = 0.1 + 0.2 * l + bump;
    d[p + "mlp_exactly_zero"] = 0.05 * l;
    d[p + "attention_output_rms"] = 1.0 + l;
    d[p + "mlp_output_rms"] = 2.0 + l;
  }
  return d;  // 2 + 2 * (6 + 6) = 26 values
}

// Writes config.yaml, metrics.jsonl (one record per step, val_loss every val_every steps, a NaN
// loss written as null at step 57 and a torn last line), events.jsonl (4 events: 2 loss spikes
// incl. one sustained, 1 grad explosion with a skip, 1 rollback, at steps 33, 57, 71, 88) and
// run_info.json.
inline void write_run_dir(const std::string& dir, const RunSpec& spec = {}) {
  write(dir + "/config.yaml",
        "run:\n  name: \"\"  # comment\n  runs_root: \"runs\"\n  recipe: \"" + spec.recipe +
            "\"\nmodel:\n  d_model: 64\n  norm: " + spec.norm + "\n  embed_scale: " + std::to_string(spec.embed_scale) +
            "\ntrain:\n  steps: " + std::to_string(spec.steps) + "\n  lr: " + std::to_string(spec.lr) +
            "\n  min_lr_ratio: 0.10000000000000001\nstability:\n  window: [8, 16]\n" + spec.extra_config);
  std::ofstream metrics(dir + "/metrics.jsonl");
  for (int s = 0; s < spec.steps; ++s) {
    nlohmann::json m = {{"step", s},
                        {"loss", 9.0 * std::exp(-s / 40.0) + 3.0 + 0.2 * std::sin(s * 0.7)},
                        {"grad_norm", 2.0 * std::exp(-s / 30.0) + 0.3 + (s == 71 ? 20.0 : 0.0)},
                        {"lr", spec.lr},
                        {"tokens_per_second", 1000.0 + s},
                        {"step_time", 0.5},
                        {"tokens_seen", 1024 * (s + 1)},
                        {"layer_grad_norms", {{"block.0", 1.0}}},
                        {"update_ratio", 0.01}};
    if (s == 57) m["loss"] = nullptr;
    if (s == 71) m["skipped"] = true;
    if ((s + 1) % spec.val_every == 0) m["val_loss"] = 4.0 + 10.0 / (s + 1);
    if (spec.diagnostics_every > 0 && (s + 1) % spec.diagnostics_every == 0) m.update(diagnostic_values(s));
    metrics << m.dump() << "\n";
  }
  metrics << "{\"step\": 1000, \"loss\": 1.";  // torn line
  metrics.close();
  auto event = [](const char* kind, int step, const char* action, int checkpoint) {
    return nlohmann::json{{"kind", kind},     {"step", step},       {"action", action},
                          {"reason", "test"}, {"checkpoint_step", checkpoint},
                          {"onset_step", step}, {"value", 1.0},       {"baseline", 0.5},
                          {"z", 7.0},         {"loss_window", {1.0, 2.0}}, {"grad_norm_window", {0.5, 3.0}}}
        .dump();
  };
  write(dir + "/events.jsonl", event("loss_spike", 33, "none", -1) + "\n" +
                                   event("nonfinite", 57, "rollback", 50) + "\n" +
                                   event("grad_explosion", 71, "skip_update", -1) + "\n" +
                                   event("sustained_spike", 88, "none", -1) + "\n");
  if (spec.with_run_info) {
    nlohmann::json info = {{"run_dir", dir}, {"recipe", spec.recipe}, {"parent", nullptr},
                           {"status", spec.status}, {"started_unix", 1700000000}, {"ended_unix", 1700000100},
                           {"exit_code", 0}, {"final_step", spec.steps}, {"final_val_loss", 4.1},
                           {"wall_seconds", 100.5}, {"tokens_per_second", 1049.5}};
    write(dir + "/run_info.json", info.dump(2));
  }
}

}  // namespace keel::registry::testing
