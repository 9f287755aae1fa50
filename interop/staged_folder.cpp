// See staged_folder.h.
#include "interop/staged_folder.h"

#include <unistd.h>

#include <filesystem>

#include "common/check.h"
#include "common/config.h"
#include "common/fs.h"

namespace keel::interop {

namespace stdfs = std::filesystem;

StagedFolder::StagedFolder(const std::string& target, bool overwrite, const std::string& option)
    : overwrite_(overwrite) {
  if (target.empty()) throw ConfigError(option + " must not be empty");
  target_ = stdfs::path(target).lexically_normal().string();
  while (target_.size() > 1 && target_.back() == '/') target_.pop_back();
  if (stdfs::exists(target_) && !overwrite)
    throw ConfigError(option + " '" + target_ + "' already exists (remove it, or pass --force to replace it)");
  if (stdfs::exists(target_) && !stdfs::is_directory(target_))
    throw ConfigError(option + " '" + target_ + "' exists and is not a folder");
  const stdfs::path parent = stdfs::path(target_).parent_path();
  if (!parent.empty()) fs::make_dirs(parent.string());
  staging_ = target_ + ".partial-" + std::to_string(::getpid());
  fs::remove_all(staging_);  // a leftover of an earlier process with our pid
  fs::make_dirs(staging_);
}

StagedFolder::~StagedFolder() {
  if (committed_) return;
  try {
    fs::remove_all(staging_);
  } catch (const std::exception&) {
  }
}

void StagedFolder::commit() {
  KEEL_CHECK(!committed_, "StagedFolder::commit called twice for " << target_);
  for (const auto& name : fs::list_dir(staging_)) fs::fsync_path(staging_ + "/" + name);
  std::string old;
  if (stdfs::exists(target_)) {
    KEEL_CHECK(overwrite_, "'" << target_ << "' appeared while it was being written");
    old = target_ + ".old-" + std::to_string(::getpid());
    fs::remove_all(old);
    fs::rename_durable(target_, old);
  }
  fs::rename_durable(staging_, target_);
  committed_ = true;
  if (!old.empty()) fs::remove_all(old);
}

}  // namespace keel::interop
