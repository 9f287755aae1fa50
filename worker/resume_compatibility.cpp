// Resume compatibility (see resume_compatibility.h).
#include "worker/resume_compatibility.h"

#include <set>

#include "common/fs.h"

namespace keel {

std::vector<std::string> model_differences(RunConfig saved, RunConfig now) {
  // Initialisation only, or a training-time choice: free to change when resuming.
  static const std::set<std::string> kMayDiffer = {"model.init", "model.scaled_out_proj", "model.dropout"};
  const auto before = flatten(saved.sections());
  const auto after = flatten(now.sections());
  std::vector<std::string> differences;
  for (const auto& [key, value] : before) {
    if (key.rfind("model.", 0) != 0 || kMayDiffer.count(key)) continue;
    auto it = after.find(key);
    const std::string current = it == after.end() ? "(absent)" : it->second;
    if (current != value) differences.push_back(key + ": checkpoint " + value + ", now " + current);
  }
  return differences;
}

void check_resume_compatible(const std::string& checkpoint_dir, const RunConfig& now) {
  const std::string saved_path = checkpoint_dir + "/config.yaml";
  if (!fs::exists(saved_path)) return;
  RunConfig saved;
  try {
    saved = RunConfig::load(saved_path, {});
  } catch (const ConfigError&) {
    return;  // written by another version: the load's tensor checks decide
  }
  const auto differences = model_differences(saved, now);
  if (differences.empty()) return;
  std::string list;
  for (const auto& d : differences) list += (list.empty() ? "" : "; ") + d;
  throw ConfigError("cannot resume from " + checkpoint_dir + ": its model differs from this config (" + list +
                    "). Resume with the checkpoint's model settings, or start a new run (keel uptrain starts "
                    "from another run's weights)");
}

}  // namespace keel
