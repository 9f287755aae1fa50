// The on-disk checkpoint store: one folder per step under a root, committed atomically. Torch-free.
//
//   <root>/step_00000042/            a committed checkpoint: its files + manifest.json (written last)
//   <root>/.tmp-step_00000042-P-N/   a save in progress (process P, counter N); never listed
//   <root>/.old-step_00000042-P-N/   a checkpoint being replaced by a new save of the same step
//
// A save writes every file into a temporary folder, writes the manifest last, fsyncs the folder
// and renames it to its final name, so a crash at any moment leaves either no checkpoint for that
// step or a complete one. Resume picks the newest checkpoint that verifies (manifest, sizes,
// CRCs) and skips damaged ones with a warning; pruning keeps the newest K plus protected steps
// (the stability monitor protects known-good checkpoints it may roll back to).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint/manifest.h"

namespace keel::checkpoint {

class CheckpointStore;

// A save in progress: write files into dir() (keel::fs::write_file_durable, write_safetensors),
// then hand it to CheckpointStore::commit. Destroyed without commit, it removes its folder.
class PendingCheckpoint {
 public:
  PendingCheckpoint(PendingCheckpoint&& other) noexcept;
  PendingCheckpoint& operator=(PendingCheckpoint&& other) noexcept;
  PendingCheckpoint(const PendingCheckpoint&) = delete;
  PendingCheckpoint& operator=(const PendingCheckpoint&) = delete;
  ~PendingCheckpoint();

  const std::string& dir() const { return dir_; }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }  // dir()/name
  int64_t step() const { return step_; }
  bool active() const { return !dir_.empty(); }  // false once committed, abandoned or moved from
  void abandon();  // removes the temporary folder now (errors are logged, not thrown)
  // Forgets the folder without removing it: a shard writer of a shared save hands the folder to
  // the rank that commits it.
  void release();

 private:
  friend class CheckpointStore;
  PendingCheckpoint(std::string root, std::string dir, int64_t step);
  std::string root_;
  std::string dir_;
  int64_t step_ = 0;
};

class CheckpointStore {
 public:
  explicit CheckpointStore(std::string root);  // creates root if missing

  const std::string& root() const { return root_; }
  static std::string dir_name(int64_t step);  // "step_00000042"
  std::string path_of(int64_t step) const;     // root/step_00000042

  // Creates <root>/.tmp-step_XXXXXXXX-<pid>-<counter>/ for a new save.
  PendingCheckpoint begin(int64_t step);
  // A save that several processes write into (one TP shard each): every process calls this and
  // gets the same folder, <root>/.tmp-step_XXXXXXXX-shared-<tag>/ (created if missing); one of them
  // commits it, the others release() their handle once their files are durable.
  PendingCheckpoint begin_shared(int64_t step, const std::string& tag);
  // Writes the manifest (every regular file under dir(), recursively, with `info`), fsyncs the
  // folder, renames it to path_of(step) (replacing an existing one: old moved aside, new renamed
  // in, old deleted), fsyncs root. Returns the final path. On failure the pending folder stays
  // owned by `pending` (and is removed by its destructor); the old checkpoint is kept.
  std::string commit(PendingCheckpoint&& pending, const nlohmann::json& info = nlohmann::json::object());

  // Whether any save of `step` is on disk under `root`: a sealed folder (step_XXXXXXXX) or a save in
  // progress (.tmp-step_XXXXXXXX-*). Never creates `root`. For keel-coordinator --checkpoint-dir,
  // which takes a shard writer's report only for a step whose files are being written.
  static bool save_exists(const std::string& root, int64_t step);

  // Steps of the committed-looking folders (step_ + digits), ascending. Not verified.
  std::vector<int64_t> list_steps() const;
  // Newest step that verifies fully (manifest + sizes + CRCs); damaged ones are skipped, logged
  // as warnings and, if `rejected` is given, recorded as "step N: reason".
  std::optional<int64_t> latest_valid(std::vector<std::string>* rejected = nullptr) const;
  VerifyResult verify(int64_t step, VerifyLevel level = VerifyLevel::kFull) const;

  // Deletes committed checkpoints except the newest `keep_last` complete ones (manifest + sizes
  // check, so a damaged newest folder never pushes out the last good one) and `protected_steps`.
  // Incomplete folders (no manifest, wrong sizes) outside that set are deleted too.
  void prune(int64_t keep_last, const std::set<int64_t>& protected_steps = {});

  // Deletes .tmp-step_* folders left by crashed saves (not those of live PendingCheckpoints of
  // this process). A .old-step_* folder whose step has no final folder (crash mid-replacement)
  // is renamed back if it verifies; otherwise it is deleted. Call at startup, before saving,
  // and not while another process saves into the same root.
  void remove_stale_temporaries();

 private:
  std::string root_;
};

}  // namespace keel::checkpoint
