// The on-disk checkpoint store (see checkpoint_store.h). Torch-free.
#include "checkpoint/checkpoint_store.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include "checkpoint/safetensors.h"
#include "common/check.h"
#include "common/fs.h"

namespace keel::checkpoint {

namespace {
namespace stdfs = std::filesystem;

constexpr const char* kStepPrefix = "step_";
constexpr const char* kTmpPrefix = ".tmp-step_";
constexpr const char* kOldPrefix = ".old-step_";

std::atomic<uint64_t> g_counter{0};

// Temporary folders of live PendingCheckpoints in this process: remove_stale_temporaries skips them.
std::mutex g_live_mutex;
std::set<std::string>& live_dirs() {
  static std::set<std::string> dirs;
  return dirs;
}
void set_live(const std::string& dir, bool live) {
  std::lock_guard<std::mutex> lock(g_live_mutex);
  if (live) live_dirs().insert(dir);
  else live_dirs().erase(dir);
}
bool is_live(const std::string& dir) {
  std::lock_guard<std::mutex> lock(g_live_mutex);
  return live_dirs().count(dir) > 0;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// "step_00000042" -> 42; the step part is 8+ digits. nullopt for anything else.
std::optional<int64_t> parse_step(const std::string& text) {
  if (text.size() < 8 || text.size() > 18) return std::nullopt;
  int64_t step = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    step = step * 10 + (c - '0');
  }
  return step;
}
std::optional<int64_t> step_of_dir_name(const std::string& name) {
  if (!starts_with(name, kStepPrefix)) return std::nullopt;
  return parse_step(name.substr(std::char_traits<char>::length(kStepPrefix)));
}
// ".tmp-step_00000042-PID-N" / ".old-step_..." -> 42.
std::optional<int64_t> step_of_hidden(const std::string& name, const std::string& prefix) {
  if (!starts_with(name, prefix)) return std::nullopt;
  std::string rest = name.substr(prefix.size());
  return parse_step(rest.substr(0, rest.find('-')));
}

std::string unique_hidden_dir(const std::string& root, const std::string& prefix, int64_t step) {
  for (;;) {
    std::string path = root + "/" + prefix + CheckpointStore::dir_name(step).substr(5) + "-" +
                       std::to_string(::getpid()) + "-" + std::to_string(g_counter.fetch_add(1));
    if (!keel::fs::exists(path)) return path;
  }
}

// Regular files under `dir`, as sorted relative paths (manifest.json excluded); fsyncs subfolders.
std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, ec); !ec && it != stdfs::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string rel = stdfs::relative(it->path(), dir).generic_string();
    if (it->is_directory()) {
      keel::fs::fsync_path(it->path().string());
    } else if (it->is_regular_file() && rel != kManifestName) {
      files.push_back(rel);
    } else if (rel != kManifestName) {
      KEEL_CHECK(false, "checkpoint folder '" << dir << "' holds '" << rel << "', which is not a regular file");
    }
  }
  KEEL_CHECK(!ec, "cannot list '" << dir << "': " << ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

void remove_logged(const std::string& path, const char* why) {
  try {
    keel::fs::remove_all(path);
    spdlog::info("checkpoint: removed {} ({})", path, why);
  } catch (const std::exception& e) {
    spdlog::warn("checkpoint: cannot remove {}: {}", path, e.what());
  }
}
}  // namespace

// ------------------------------------------------------------------------ PendingCheckpoint ----

PendingCheckpoint::PendingCheckpoint(std::string root, std::string dir, int64_t step)
    : root_(std::move(root)), dir_(std::move(dir)), step_(step) {
  set_live(dir_, true);
}

PendingCheckpoint::PendingCheckpoint(PendingCheckpoint&& other) noexcept
    : root_(std::move(other.root_)), dir_(std::move(other.dir_)), step_(other.step_) {
  other.dir_.clear();
}

PendingCheckpoint& PendingCheckpoint::operator=(PendingCheckpoint&& other) noexcept {
  if (this != &other) {
    abandon();
    root_ = std::move(other.root_);
    dir_ = std::move(other.dir_);
    step_ = other.step_;
    other.dir_.clear();
  }
  return *this;
}

PendingCheckpoint::~PendingCheckpoint() { abandon(); }

void PendingCheckpoint::abandon() {
  if (dir_.empty()) return;
  remove_logged(dir_, "save not committed");
  set_live(dir_, false);
  dir_.clear();
}

void PendingCheckpoint::release() {
  if (dir_.empty()) return;
  set_live(dir_, false);
  dir_.clear();
}

// -------------------------------------------------------------------------- CheckpointStore ----

CheckpointStore::CheckpointStore(std::string root) : root_(std::move(root)) {
  KEEL_CHECK(!root_.empty(), "checkpoint root must not be empty");
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  keel::fs::make_dirs(root_);
}

std::string CheckpointStore::dir_name(int64_t step) {
  KEEL_CHECK(step >= 0, "checkpoint step must be non-negative, got " << step);
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08lld", static_cast<long long>(step));
  return name;
}

std::string CheckpointStore::path_of(int64_t step) const { return root_ + "/" + dir_name(step); }

PendingCheckpoint CheckpointStore::begin(int64_t step) {
  const std::string dir = unique_hidden_dir(root_, kTmpPrefix, step);
  keel::fs::make_dirs(dir);
  return PendingCheckpoint(root_, dir, step);
}

PendingCheckpoint CheckpointStore::begin_shared(int64_t step, const std::string& tag) {
  const std::string dir = root_ + "/" + kTmpPrefix + dir_name(step).substr(5) + "-shared-" + tag;
  keel::fs::make_dirs(dir);
  return PendingCheckpoint(root_, dir, step);
}

std::string CheckpointStore::commit(PendingCheckpoint&& pending, const nlohmann::json& info) {
  KEEL_CHECK(pending.active(), "commit of a checkpoint that was already committed or abandoned");
  KEEL_CHECK(pending.root_ == root_, "checkpoint begun in '" << pending.root_ << "' committed to '" << root_ << "'");
  const int64_t step = pending.step();
  const std::vector<std::string> files = files_under(pending.dir());
  KEEL_CHECK(!files.empty(), "checkpoint for step " << step << " has no files in '" << pending.dir() << "'");
  write_manifest(pending.dir(), build_manifest(pending.dir(), step, files, info));  // last
  keel::fs::fsync_path(pending.dir());

  const std::string final_dir = path_of(step);
  std::string old_dir;
  if (keel::fs::exists(final_dir)) {
    old_dir = unique_hidden_dir(root_, kOldPrefix, step);
    keel::fs::rename_durable(final_dir, old_dir);
  }
  try {
    keel::fs::rename_durable(pending.dir(), final_dir);  // fsyncs root
  } catch (...) {
    if (!old_dir.empty()) keel::fs::rename_durable(old_dir, final_dir);  // put the old one back
    throw;
  }
  set_live(pending.dir_, false);
  pending.dir_.clear();
  if (!old_dir.empty()) {
    remove_logged(old_dir, "replaced by a new save of the same step");  // a leftover is cleaned later
    keel::fs::fsync_path(root_);
  }
  spdlog::info("checkpoint: committed step {} ({} files) to {}", step, files.size(), final_dir);
  return final_dir;
}

bool CheckpointStore::save_exists(const std::string& root, int64_t step) {
  const std::string name = dir_name(step);
  if (stdfs::is_directory(root + "/" + name)) return true;
  std::error_code ec;
  if (!stdfs::is_directory(root, ec)) return false;
  const std::string pending = kTmpPrefix + name.substr(5) + "-";
  for (const auto& entry : stdfs::directory_iterator(root, ec)) {
    if (starts_with(entry.path().filename().string(), pending) && entry.is_directory(ec)) return true;
  }
  return false;
}

std::vector<int64_t> CheckpointStore::list_steps() const {
  std::vector<int64_t> steps;
  for (const auto& name : keel::fs::list_dir(root_)) {
    auto step = step_of_dir_name(name);
    if (step && name == dir_name(*step) && stdfs::is_directory(root_ + "/" + name)) steps.push_back(*step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

VerifyResult CheckpointStore::verify(int64_t step, VerifyLevel level) const {
  const std::string dir = path_of(step);
  if (!stdfs::is_directory(dir)) return VerifyResult::bad("no folder " + dir);
  return verify_checkpoint(dir, level, step);
}

std::optional<int64_t> CheckpointStore::latest_valid(std::vector<std::string>* rejected) const {
  std::vector<int64_t> steps = list_steps();
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    VerifyResult result = verify(*it);
    if (result) return *it;
    const std::string why = "step " + std::to_string(*it) + ": " + result.problem;
    spdlog::warn("checkpoint: skipping {} in {}", why, root_);
    if (rejected) rejected->push_back(why);
  }
  return std::nullopt;
}

void CheckpointStore::prune(int64_t keep_last, const std::set<int64_t>& protected_steps) {
  KEEL_CHECK(keep_last >= 0, "prune: keep_last must be non-negative, got " << keep_last);
  std::vector<int64_t> steps = list_steps();
  int64_t kept = 0;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (protected_steps.count(*it)) continue;
    if (kept < keep_last) {
      VerifyResult result = verify(*it, VerifyLevel::kSizes);
      if (result) {
        ++kept;
        continue;
      }
      spdlog::warn("checkpoint: step {} is incomplete ({}); not counted as kept", *it, result.problem);
    }
    remove_logged(path_of(*it), "pruned");
  }
  keel::fs::fsync_path(root_);
}

void CheckpointStore::remove_stale_temporaries() {
  for (const auto& name : keel::fs::list_dir(root_)) {
    const std::string path = root_ + "/" + name;
    if (step_of_hidden(name, kTmpPrefix)) {
      if (!is_live(path)) remove_logged(path, "temporary folder of an unfinished save");
    } else if (auto step = step_of_hidden(name, kOldPrefix)) {
      if (!keel::fs::exists(path_of(*step)) && verify_checkpoint(path, VerifyLevel::kFull, *step)) {
        keel::fs::rename_durable(path, path_of(*step));
        spdlog::warn("checkpoint: restored step {} from {} (a replacement save was interrupted)", *step, path);
      } else {
        remove_logged(path, "replaced checkpoint");
      }
    }
  }
  keel::fs::fsync_path(root_);
}

}  // namespace keel::checkpoint
