// What the checkpoint-reading commands (keel diagnose, generate, uptrain) share: turning the
// CHECKPOINT argument (a checkpoint folder or a run directory) into one verified checkpoint
// folder, and a scratch folder for the token files they exchange with keel-tokenize /
// keel-detokenize (SentencePiece cannot share a process with LibTorch). Torch-free.
#pragma once

#include <string>

namespace keel::cli {

// The checkpoint folder `path` names: itself when it holds trainer_state.json, else the newest
// checkpoint that verifies under path/checkpoints (a run directory) or path. Damaged checkpoints
// are skipped with a note on stderr naming `command`. Throws KeelError when there is none.
std::string resolve_checkpoint(const std::string& path, const std::string& command);

// A temporary folder (keel-<purpose>-XXXXXX under the system's temp folder), removed on scope exit.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& purpose);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace keel::cli
