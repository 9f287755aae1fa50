// A folder written under a temporary sibling name and renamed into place when complete, so that
// `keel export` / `keel import` never leave a half-written --out behind: a refusal or an error
// removes the staging folder (destructor), and --out only ever appears whole. Torch-free.
#pragma once

#include <string>

namespace keel::interop {

class StagedFolder {
 public:
  // Throws ConfigError naming `option` (e.g. "--out") when `target` exists and `overwrite` is
  // false; creates target's parent folders and the staging folder "<target>.partial-<pid>".
  StagedFolder(const std::string& target, bool overwrite, const std::string& option);
  ~StagedFolder();  // removes the staging folder unless committed
  StagedFolder(const StagedFolder&) = delete;
  StagedFolder& operator=(const StagedFolder&) = delete;

  const std::string& path() const { return staging_; }  // write here
  // Moves the staging folder to the target (replacing it when overwriting), durably.
  void commit();

 private:
  std::string target_, staging_;
  bool overwrite_ = false, committed_ = false;
};

}  // namespace keel::interop
