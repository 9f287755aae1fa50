// `keel compare RUN_DIR... [--plot [OUT.png]]`
//
// Prints a table of the runs (final and best val loss, loss spikes, grad explosions, non-finite
// steps, skips, rollbacks, tokens/s, wall time), then the config keys in which they differ (one
// value per run); with --plot draws loss and grad-norm curves with event markers (default
// <first run>/../compare.png) and prints the path.
#include <filesystem>
#include <iostream>

#include "cli/cli_util.h"
#include "common/check.h"
#include "registry/curve_plot.h"
#include "registry/run_summary.h"

namespace keel::cli {
namespace {

bool is_run_dir(const std::string& path) {
  return std::filesystem::is_directory(path) &&
         (std::filesystem::exists(path + "/run_info.json") || std::filesystem::exists(path + "/metrics.jsonl"));
}

}  // namespace

int compare_command(const std::vector<std::string>& args) {
  CLI::App app("Compare training runs: stability events, losses, config differences, curves", "keel compare");
  std::vector<std::string> run_dirs;
  std::string plot_path;
  app.add_option("runs", run_dirs, "run directories")->required();
  app.add_option("--plot", plot_path, "draw loss/grad-norm curves into OUT.png (default: FIRST_RUN/../compare.png)")
      ->expected(0, 1);
  if (int code = parse_args(app, args); code >= 0) return code;
  const bool plot = app.count("--plot") > 0;

  return run_guarded("compare", [&]() -> int {
    // `--plot RUN_DIR ...`: the optional value was a run directory, not the output.
    if (!plot_path.empty() && is_run_dir(plot_path)) {
      run_dirs.insert(run_dirs.begin(), plot_path);
      plot_path.clear();
    }
    std::vector<registry::RunData> data;
    std::vector<registry::RunSummary> runs;
    for (const auto& dir : run_dirs) {
      KEEL_CHECK(is_run_dir(dir), "'" << dir << "' is not a run directory (no run_info.json or metrics.jsonl)");
      data.push_back(registry::read_run_dir(dir));
      runs.push_back(registry::summarize(data.back()));
    }
    // Distinct names: base names, or the paths as given when two share one.
    std::vector<std::string> names;
    for (const auto& r : runs) names.push_back(r.name);
    for (size_t i = 0; i < names.size(); ++i)
      for (size_t j = 0; j < names.size(); ++j)
        if (i != j && runs[i].name == runs[j].name) names[i] = run_dirs[i];

    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < runs.size(); ++i) {
      const auto& r = runs[i];
      rows.push_back({names[i], r.status, std::to_string(r.steps), registry::format_number(r.final_val_loss, 4),
                      registry::format_number(r.best_val_loss, 4), std::to_string(r.loss_spikes),
                      std::to_string(r.grad_explosions), std::to_string(r.nonfinite), std::to_string(r.skips),
                      std::to_string(r.rollbacks), registry::format_number(r.max_grad_norm, 2),
                      registry::format_number(r.mean_tokens_per_second, 0), registry::format_duration(r.wall_seconds)});
    }
    std::cout << registry::format_table({"run", "status", "steps", "final val", "best val", "spikes", "grad expl",
                                         "non-finite", "skips", "rollbacks", "max grad", "tokens/s", "wall"},
                                        rows);

    if (runs.size() > 1) {
      const auto diffs = registry::config_differences(runs);
      std::cout << "\n";
      if (diffs.empty()) {
        std::cout << "configs: identical\n";
      } else {
        std::vector<std::string> header = {"config key"};
        header.insert(header.end(), names.begin(), names.end());
        std::vector<std::vector<std::string>> diff_rows;
        for (const auto& d : diffs) {
          std::vector<std::string> row = {d.key};
          row.insert(row.end(), d.values.begin(), d.values.end());
          diff_rows.push_back(row);
        }
        std::cout << "configs differ in " << diffs.size() << " key" << (diffs.size() == 1 ? "" : "s") << ":\n"
                  << registry::format_table(header, diff_rows);
      }
    }

    if (plot) {
      if (plot_path.empty()) {
        std::string first = run_dirs.front();
        while (first.size() > 1 && first.back() == '/') first.pop_back();
        const auto parent = std::filesystem::path(first).parent_path();
        plot_path = (parent.empty() ? std::filesystem::path(".") : parent).string() + "/compare.png";
      }
      std::vector<registry::CurveSeries> series;
      for (size_t i = 0; i < data.size(); ++i) series.push_back(registry::curve_series(data[i], names[i]));
      registry::plot_curves(series, plot_path);
      std::cout << "\ncurves: " << plot_path << "\n";
    }
    return 0;
  });
}

}  // namespace keel::cli
