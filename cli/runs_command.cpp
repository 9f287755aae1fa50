// `keel runs [--root runs] [--registry FILE] [--downsample N]`
//
// Imports every run directory under the root (a folder holding run_info.json) into the run
// registry (default <root>/registry.sqlite), then prints the runs under the root: recipe, status,
// steps, final val loss, stability events, tokens/s and parent.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "cli/cli_util.h"
#include "common/check.h"
#include "registry/run_registry.h"
#include "registry/run_summary.h"

namespace keel::cli {
namespace {

// Run directories under `root` (depth-first, sorted); checkpoint folders are not searched.
std::vector<std::string> find_run_dirs(const std::string& root) {
  namespace stdfs = std::filesystem;
  std::vector<std::string> dirs;
  std::error_code ec;
  if (stdfs::exists(root + "/run_info.json")) dirs.push_back(root);
  for (auto it = stdfs::recursive_directory_iterator(root, stdfs::directory_options::skip_permission_denied, ec);
       !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_directory(ec)) continue;
    const std::string name = it->path().filename().string();
    if (name == "checkpoints" || (!name.empty() && name[0] == '.') || it.depth() > 6) {
      it.disable_recursion_pending();
      continue;
    }
    if (stdfs::exists(it->path() / "run_info.json")) dirs.push_back(it->path().string());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// `path` relative to `base` when it lies under it.
std::string relative_to(const std::string& path, const std::string& base) {
  if (path.size() > base.size() && path.compare(0, base.size(), base) == 0 && path[base.size()] == '/')
    return path.substr(base.size() + 1);
  return path;
}

}  // namespace

int runs_command(const std::vector<std::string>& args) {
  CLI::App app("Index run directories in the run registry and list them", "keel runs");
  std::string root = "runs", registry_path;
  int64_t downsample = 10;
  app.add_option("--root", root, "folder holding run directories (searched recursively)")->capture_default_str();
  app.add_option("--registry", registry_path, "registry file (default: ROOT/registry.sqlite)");
  app.add_option("--downsample", downsample, "keep every Nth step's metrics (plus val/event steps)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  if (int code = parse_args(app, args); code >= 0) return code;

  return run_guarded("runs", [&]() -> int {
    if (!std::filesystem::exists(root)) {  // a new user before the first `keel train`: nothing yet, not an error
      std::cout << "no runs yet: '" << root << "' does not exist (keel train creates its run directories there)\n";
      return 0;
    }
    KEEL_CHECK(std::filesystem::is_directory(root), "runs root '" << root << "' is not a folder");
    if (registry_path.empty()) registry_path = root + "/registry.sqlite";
    registry::RunRegistry registry(registry_path);
    int failures = 0;
    for (const auto& dir : find_run_dirs(root)) {
      try {
        registry.import_run_dir(dir, downsample);
      } catch (const std::exception& e) {
        std::cerr << "keel runs: skipping '" << dir << "': " << user_message(e) << "\n";
        failures++;
      }
    }
    const std::string base = registry::run_id_for(root);
    std::vector<std::vector<std::string>> rows;
    for (const auto& run : registry.list_runs()) {
      if (relative_to(run.id, base) == run.id) continue;  // another root's run
      rows.push_back({relative_to(run.id, base), run.recipe.empty() ? "-" : run.recipe, run.status,
                      run.final_step >= 0 ? std::to_string(run.final_step) : "-",
                      registry::format_number(run.final_val_loss, 4), std::to_string(run.num_events),
                      registry::format_number(run.tokens_per_second, 0),
                      run.parent.empty() ? "-" : run.parent});
    }
    if (rows.empty()) {
      std::cout << "no runs under '" << root << "' (run directories hold run_info.json)\n";
    } else {
      std::cout << registry::format_table(
          {"run", "recipe", "status", "steps", "final val loss", "events", "tokens/s", "parent"}, rows);
    }
    std::cout << "\nregistry: " << registry_path << " (" << rows.size() << " runs)\n";
    return failures > 0 ? 1 : 0;
  });
}

}  // namespace keel::cli
