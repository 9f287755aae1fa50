// `keel compare RUN_DIR... [--plot [OUT.png]] [--heatmap OUT.png]`
//
// Prints a table of the runs (steps, and steps replayed after rollbacks, final and best val loss,
// loss spikes, grad explosions, non-finite steps, skips, rollbacks (one per rollback, however many
// detectors called for it), tokens/s (metrics/throughput.h), wall time), then the model diagnostics of each run's last
// probe (one line per run: mean normalised attention entropy, entropic-overload fraction, mean
// linearity, mean MLP sparsity, embedding std; then a per-layer table per run), then the config
// keys in which they differ (one value per run); with --plot draws loss and grad-norm curves with
// event markers (default <first run>/../compare.png) and prints the path; with --heatmap draws the
// runs' final per-layer x per-head normalised attention entropy side by side.
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/cli_util.h"
#include "common/check.h"
#include "registry/curve_plot.h"
#include "registry/heatmap_plot.h"
#include "registry/run_summary.h"

namespace keel::cli {
namespace {

bool is_run_dir(const std::string& path) {
  return std::filesystem::is_directory(path) &&
         (std::filesystem::exists(path + "/run_info.json") || std::filesystem::exists(path + "/metrics.jsonl"));
}

// Why a run has no diagnostics: off, or on but the run ended before the first probe.
std::string why_no_diagnostics(const registry::RunSummary& run) {
  const auto config = registry::flatten_config(run.config_yaml);
  const auto every = config.find("diagnostics.every");
  if (every == config.end()) return "its config names no diagnostics.every";
  if (std::atof(every->second.c_str()) <= 0) return "diagnostics.every = " + every->second + ": off";
  return "diagnostics.every = " + every->second + ", but the run ended after " + std::to_string(run.steps) +
         " steps, before the first probe";
}

// The diagnostics section: a line per run, then each run's per-layer table.
void print_diagnostics(const std::vector<registry::RunSummary>& runs, const std::vector<std::string>& names) {
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& d = runs[i].diagnostics;
    if (d.empty()) continue;
    rows.push_back({names[i], std::to_string(d.step + 1), registry::format_number(d.mean_entropy, 3),
                    registry::format_number(d.mean_normalised_entropy, 3), registry::format_number(d.overload_fraction, 3),
                    registry::format_number(d.mean_linearity, 4), registry::format_number(d.mean_linearity_without_residual, 4),
                    registry::format_number(d.mean_mlp_sparsity, 4), registry::format_number(d.mean_mlp_exactly_zero, 4),
                    registry::format_number(d.embedding_output_std, 4), registry::format_number(d.max_attention_logit, 2)});
  }
  if (rows.empty()) {
    std::cout << "\nmodel diagnostics: none recorded";
    if (runs.size() == 1) std::cout << " (" << why_no_diagnostics(runs.front()) << ")";
    std::cout << "\n";
    return;
  }
  std::cout << "\nmodel diagnostics (last probe; means over heads / layers):\n"
            << registry::format_table({"run", "after step", "entropy", "norm. entropy", "overload", "linearity",
                                       "lin. w/o resid.", "MLP sparsity", "exact zeros", "emb. std", "max attn logit"},
                                      rows);
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& d = runs[i].diagnostics;
    if (d.empty()) continue;
    std::cout << "\n" << names[i] << ": per layer after step " << d.step + 1 << "\n" << registry::format_layer_table(d);
  }
}

// The runs as given, read and summarised, with distinct display names: base names, or the paths
// as given when two share one.
struct ComparedRuns {
  std::vector<std::string> dirs, names;
  std::vector<registry::RunData> data;
  std::vector<registry::RunSummary> runs;
};

ComparedRuns read_runs(const std::vector<std::string>& run_dirs) {
  ComparedRuns c;
  c.dirs = run_dirs;
  for (const auto& dir : run_dirs) {
    KEEL_CHECK(is_run_dir(dir), "'" << dir << "' is not a run directory (no run_info.json or metrics.jsonl)");
    c.data.push_back(registry::read_run_dir(dir));
    c.runs.push_back(registry::summarize(c.data.back()));
  }
  for (const auto& r : c.runs) c.names.push_back(r.name);
  for (size_t i = 0; i < c.names.size(); ++i)
    for (size_t j = 0; j < c.names.size(); ++j)
      if (i != j && c.runs[i].name == c.runs[j].name) c.names[i] = run_dirs[i];
  return c;
}

void print_run_table(const ComparedRuns& c) {
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < c.runs.size(); ++i) {
    const auto& r = c.runs[i];
    rows.push_back({c.names[i], r.status, std::to_string(r.steps),
                    r.replayed_steps >= 0 ? std::to_string(r.replayed_steps) : "-",
                    registry::format_number(r.final_val_loss, 4),
                    registry::format_number(r.best_val_loss, 4), std::to_string(r.loss_spikes),
                    std::to_string(r.grad_explosions), std::to_string(r.nonfinite), std::to_string(r.skips),
                    std::to_string(r.rollbacks), registry::format_number(r.max_grad_norm, 2),
                    registry::format_number(r.tokens_per_second, 0), registry::format_duration(r.wall_seconds)});
  }
  std::cout << registry::format_table({"run", "status", "steps", "replayed", "final val", "best val", "spikes", "grad expl",
                                       "non-finite", "skips", "rollbacks", "max grad", "tokens/s", "wall"},
                                      rows);
}

// The config keys in which two or more runs differ, one value per run.
void print_config_differences(const ComparedRuns& c) {
  const auto diffs = registry::config_differences(c.runs);
  std::cout << "\n";
  if (diffs.empty()) {
    std::cout << "configs: identical\n";
    return;
  }
  std::vector<std::string> header = {"config key"};
  header.insert(header.end(), c.names.begin(), c.names.end());
  std::vector<std::vector<std::string>> diff_rows;
  for (const auto& d : diffs) {
    std::vector<std::string> row = {d.key};
    row.insert(row.end(), d.values.begin(), d.values.end());
    diff_rows.push_back(row);
  }
  std::cout << "configs differ in " << diffs.size() << " key" << (diffs.size() == 1 ? "" : "s") << ":\n"
            << registry::format_table(header, diff_rows);
}

// Loss and grad-norm curves into `plot_path` (default: beside the first run, compare.png).
void draw_curves(const ComparedRuns& c, std::string plot_path) {
  if (plot_path.empty()) {
    std::string first = c.dirs.front();
    while (first.size() > 1 && first.back() == '/') first.pop_back();
    const auto parent = std::filesystem::path(first).parent_path();
    plot_path = (parent.empty() ? std::filesystem::path(".") : parent).string() + "/compare.png";
  }
  std::vector<registry::CurveSeries> series;
  for (size_t i = 0; i < c.data.size(); ++i) series.push_back(registry::curve_series(c.data[i], c.names[i]));
  registry::plot_curves(series, plot_path);
  std::cout << "\ncurves: " << plot_path << "\n";
}

void draw_entropy_heatmaps(const ComparedRuns& c, const std::string& heatmap_path) {
  std::vector<registry::HeatmapPanel> panels;
  for (size_t i = 0; i < c.runs.size(); ++i) {
    const auto& d = c.runs[i].diagnostics;
    KEEL_CHECK(!d.empty(), "--heatmap: run '" << c.names[i] << "' recorded no diagnostics ("
                                                 << why_no_diagnostics(c.runs[i]) << ")");
    panels.push_back(registry::entropy_panel(d, c.names[i] + " (step " + std::to_string(d.step + 1) + ")"));
  }
  registry::plot_heatmaps(panels, heatmap_path);
  std::cout << "\nentropy heat map: " << heatmap_path << "\n";
}

}  // namespace

int compare_command(const std::vector<std::string>& args) {
  CLI::App app("Compare training runs: stability events, losses, config differences, curves", "keel compare");
  std::vector<std::string> run_dirs;
  std::string plot_path, heatmap_path;
  app.add_option("runs", run_dirs, "run directories")->required();
  app.add_option("--plot", plot_path, "draw loss/grad-norm curves into OUT.png (default: FIRST_RUN/../compare.png)")
      ->expected(0, 1);
  app.add_option("--heatmap", heatmap_path,
                 "draw each run's last per-layer x per-head normalised attention entropy into OUT.png");
  if (int code = parse_args(app, args); code >= 0) return code;
  const bool plot = app.count("--plot") > 0;

  return run_guarded("compare", [&]() -> int {
    // `--plot RUN_DIR ...`: the optional value was a run directory, not the output.
    if (!plot_path.empty() && is_run_dir(plot_path)) {
      run_dirs.insert(run_dirs.begin(), plot_path);
      plot_path.clear();
    }
    const ComparedRuns compared = read_runs(run_dirs);
    print_run_table(compared);
    print_diagnostics(compared.runs, compared.names);
    if (compared.runs.size() > 1) print_config_differences(compared);
    if (plot) draw_curves(compared, plot_path);
    if (!heatmap_path.empty()) draw_entropy_heatmaps(compared, heatmap_path);
    return 0;
  });
}

}  // namespace keel::cli
