// See checkpoint_args.h.
#include "cli/checkpoint_args.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <vector>

#include "checkpoint/checkpoint_store.h"
#include "common/check.h"
#include "common/fs.h"

namespace keel::cli {

namespace stdfs = std::filesystem;

std::string resolve_checkpoint(const std::string& path, const std::string& command) {
  KEEL_CHECK(stdfs::is_directory(path), "'" << path << "' is not a folder (a checkpoint, or a run directory)");
  if (stdfs::exists(path + "/trainer_state.json")) return path;
  const std::string root = stdfs::is_directory(path + "/checkpoints") ? path + "/checkpoints" : path;
  checkpoint::CheckpointStore store(root);
  std::vector<std::string> rejected;
  auto step = store.latest_valid(&rejected);
  for (const auto& r : rejected) std::cerr << "keel " << command << ": skipping damaged checkpoint: " << r << "\n";
  KEEL_CHECK(step.has_value(), "no complete checkpoint under '" << root << "'");
  return store.path_of(*step);
}

ScratchDir::ScratchDir(const std::string& purpose) {
  std::string pattern = (stdfs::temp_directory_path() / ("keel-" + purpose + "-XXXXXX")).string();
  KEEL_CHECK(::mkdtemp(pattern.data()) != nullptr, "cannot create a temporary folder: " << std::strerror(errno));
  path_ = pattern;
}

ScratchDir::~ScratchDir() {
  try {
    fs::remove_all(path_);
  } catch (const std::exception&) {
  }
}

}  // namespace keel::cli
