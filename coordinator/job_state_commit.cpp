// JobState, second half: two-phase checkpoint commit, the persisted state file, and snapshots.
// Phase one is each writer's atomic shard write; phase two is its report here. A step is committed
// only when every expected writer (the dp_rank 0 member of each TP group; every rank when the reports
// say every_dp_rank: a sharded optimizer's per-DP-rank files) reported it, so a crash
// mid-checkpoint can never make a partial checkpoint look complete. Committed steps and the
// generation survive a coordinator restart through `coordinator_state.json` in the state dir.
//
// The commit rule (issue 28), when the coordinator sees the run's checkpoint folder
// (JobOptions::disk: keel-coordinator --checkpoint-dir, which `keel train` always passes):
//   1. A report is taken only for a step whose files are on disk (a save in progress,
//      .tmp-step_XXXXXXXX-*, or its sealed folder): a report of a step no writer is writing, such as
//      a forged CommitCheckpoint for step 123456, is refused with FAILED_PRECONDITION and leaves no
//      trace. (Who may call at all is the token's business: coordinator_service.cpp.)
//   2. Once every writer reported a step, it is *agreed*: commit_shard answers true and rank 0
//      seals the folder (manifest, rename; worker/checkpoint_committer.cpp) — the two-phase
//      protocol is unchanged for the workers.
//   3. An agreed step is *recorded* as committed (state file, LatestCommitted, JobStatus, /metrics)
//      only once its folder verifies on disk (manifest + sizes: a sealed folder). The coordinator
//      looks on every report (the previous step is sealed before the next save's reports, and
//      pruned only after them, so no step is missed), on every rank's Shutdown (rank 0 seals its
//      last checkpoint before), from the server's check loop and before answering LatestCommitted
//      or JobStatus. So the state file never names a step that is not sealed on disk; it may lag the
//      disk by one check interval, which costs nothing: a restarted job resumes from the newest
//      checkpoint that verifies on disk (launch/local_job.cpp, worker/trainer_setup.cpp), never from
//      this record.
//   4. A new generation forgets agreed steps that were never sealed (their job failed first).
// Without a visible disk (a coordinator started by hand without --checkpoint-dir, unit tests), the
// protocol alone decides: a step is recorded once every writer reported it.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

#include "common/fs.h"
#include "coordinator/job_state.h"

namespace keel::coord {
namespace {

[[noreturn]] void reject(JobErrorCode code, const std::string& message) {
  throw JobError(code, message);
}

constexpr const char* kStateFile = "coordinator_state.json";
constexpr int kStateFormat = 1;

}  // namespace

bool JobState::commit_shard(const std::string& job_id, const ShardReport& shard,
                            SteadyClock::time_point wait_deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  check_job_locked(job_id);
  running_rank_locked(shard.rank, shard.generation);
  if (shard.step < 0) reject(JobErrorCode::kInvalidArgument, "checkpoint step must be >= 0");
  if (shard.shard_name.empty()) reject(JobErrorCode::kInvalidArgument, "shard name must not be empty");
  // Shard names label files of one checkpoint folder ("tp0"); refuse anything that could be read as
  // a path or is not a short plain name, whatever a client sends.
  const bool plain = shard.shard_name.size() <= 64 && shard.shard_name.front() != '.' &&
                     std::all_of(shard.shard_name.begin(), shard.shard_name.end(), [](unsigned char c) {
                       return std::isalnum(c) || c == '_' || c == '-' || c == '.';
                     });
  if (!plain) {
    reject(JobErrorCode::kInvalidArgument,
           "shard name must be 1-64 characters of [A-Za-z0-9._-], not starting with '.' (got " +
               std::to_string(shard.shard_name.size()) + " bytes)");
  }
  if (!layout_.is_shard_writer(shard.rank, shard.every_dp_rank)) {
    reject(JobErrorCode::kInvalidArgument,
           "rank " + std::to_string(shard.rank) + " (dp_rank " + std::to_string(layout_.dp_rank(shard.rank)) +
               ") is not a shard writer: writers are the dp_rank 0 member of each TP group, ranks 0.." +
               std::to_string(layout_.tp_size() - 1) + " (every rank only for a sharded optimizer's per-DP-rank files)");
  }
  const bool disk = options_.disk.visible();
  if (disk) record_sealed_locked();  // the previous checkpoint, before rank 0 may prune it
  if (committed_.count(shard.step) || agreed_.count(shard.step)) return true;  // a retried report
  if (phase_ == JobPhase::kFailed) {
    reject(JobErrorCode::kFailedPrecondition,
           "job failed, checkpoint step " + std::to_string(shard.step) + " cannot commit: " + message_);
  }
  if (disk) {
    const std::string missing = options_.disk.save_missing(shard.step);
    if (!missing.empty()) {
      reject(JobErrorCode::kFailedPrecondition,
             "rank " + std::to_string(shard.rank) + " reported shard '" + shard.shard_name + "' of checkpoint step " +
                 std::to_string(shard.step) + ", but no shard of that step was written: " + missing +
                 ". A shard writer reports its shard after writing it; nothing was committed");
    }
  }
  auto& reported = shards_[shard.step];
  if (!reported.empty() && reported.begin()->second.every_dp_rank != shard.every_dp_rank) {
    const bool earlier = reported.begin()->second.every_dp_rank;
    reject(JobErrorCode::kInvalidArgument,
           "rank " + std::to_string(shard.rank) + " reported shard '" + shard.shard_name + "' of checkpoint step " +
               std::to_string(shard.step) + (shard.every_dp_rank ? " as one of every rank's shards" : " as a TP shard") +
               ", but rank " + std::to_string(reported.begin()->first) + " reported that step " +
               (earlier ? "as one of every rank's shards" : "as a TP shard") + ": the writers disagree on the layout");
  }
  auto it = reported.find(shard.rank);
  if (it != reported.end()) {
    const ShardReport& old = it->second;
    if (old.shard_name != shard.shard_name || old.bytes != shard.bytes || old.crc32 != shard.crc32) {
      reject(JobErrorCode::kAlreadyExists, "rank " + std::to_string(shard.rank) +
                                               " already reported shard '" + old.shard_name + "' for step " +
                                               std::to_string(shard.step) + " with different contents");
    }
  } else {
    reported.emplace(shard.rank, shard);
  }
  if (static_cast<int>(reported.size()) == layout_.shard_writers(shard.every_dp_rank)) {
    shards_.erase(shard.step);
    if (disk) {
      // Agreed: rank 0 seals it now; it is recorded once the sealed folder is on disk.
      agreed_.insert(shard.step);
      while (agreed_.size() > kMaxCommittedSteps) agreed_.erase(agreed_.begin());
      record_sealed_locked();  // a re-save of a step whose folder is sealed already
    } else {
      committed_.insert(shard.step);
      while (committed_.size() > kMaxCommittedSteps) committed_.erase(committed_.begin());
      persist_locked();  // before anyone hears "committed", so a restart cannot forget it
    }
    cv_.notify_all();
    return true;
  }
  const auto settled = [&] { return committed_.count(shard.step) > 0 || agreed_.count(shard.step) > 0; };
  cv_.wait_until(lock, wait_deadline, [&] { return settled() || phase_ == JobPhase::kFailed || closed_; });
  return settled();
}

void JobState::record_sealed() {
  std::lock_guard<std::mutex> lock(mu_);
  record_sealed_locked();
}

void JobState::record_sealed_locked() {
  if (agreed_.empty() || !options_.disk.visible()) return;
  bool recorded = false;
  for (auto it = agreed_.begin(); it != agreed_.end();) {
    bool sealed = false;
    try {
      sealed = options_.disk.sealed(*it);
    } catch (const std::exception&) {
      // unreadable now: look again next time
    }
    if (sealed) {
      committed_.insert(*it);
      it = agreed_.erase(it);
      recorded = true;
    } else {
      ++it;
    }
  }
  if (!recorded) return;
  while (committed_.size() > kMaxCommittedSteps) committed_.erase(committed_.begin());
  persist_locked();
}

int64_t JobState::latest_committed(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  check_job_locked(job_id);
  return committed_.empty() ? -1 : *committed_.rbegin();
}

std::vector<int64_t> JobState::committed_steps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {committed_.begin(), committed_.end()};
}

void JobState::load_state() {
  generation_ = 1;
  if (options_.state_dir.empty()) return;
  fs::make_dirs(options_.state_dir);
  const std::string path = options_.state_dir + "/" + kStateFile;
  if (fs::exists(path)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(fs::read_file(path));
    } catch (const nlohmann::json::exception& e) {
      KEEL_CHECK(false, "coordinator state file " << path << " is not valid JSON: " << e.what());
    }
    KEEL_CHECK(j.value("format", 0) == kStateFormat,
               "coordinator state file " << path << " has unknown format " << j.value("format", 0));
    const std::string owner = j.value("job_id", std::string());
    KEEL_CHECK(owner == options_.job_id, "state dir " << options_.state_dir << " belongs to job '" << owner
                                                      << "', not '" << options_.job_id
                                                      << "'; use another --state-dir");
    generation_ = j.value("generation", int64_t{0}) + 1;
    for (const auto& s : j.value("committed_steps", std::vector<int64_t>{})) committed_.insert(s);
  }
  persist_locked();  // record this generation now, so the next restart counts past it
}

void JobState::persist_locked() const {
  if (options_.state_dir.empty()) return;
  nlohmann::json j;
  j["format"] = kStateFormat;
  j["job_id"] = options_.job_id;
  j["generation"] = generation_;
  j["latest_committed_step"] = committed_.empty() ? -1 : *committed_.rbegin();
  j["committed_steps"] = std::vector<int64_t>(committed_.begin(), committed_.end());
  fs::write_file_atomic(options_.state_dir + "/" + kStateFile, j.dump(2) + "\n");
}

JobSnapshot JobState::snapshot(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  check_job_locked(job_id);
  return snapshot_locked();
}

JobSnapshot JobState::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_locked();
}

JobSnapshot JobState::snapshot_locked() const {
  JobSnapshot s;
  s.job_id = options_.job_id;
  s.phase = phase_;
  s.message = message_;
  s.world_size = layout_.world_size();
  s.dp_size = layout_.dp_size();
  s.tp_size = layout_.tp_size();
  s.registered = ranks_.empty() ? static_cast<int>(pending_.size()) : static_cast<int>(ranks_.size());
  s.generation = generation_;
  s.latest_committed_step = committed_.empty() ? -1 : *committed_.rbegin();
  const auto t = now();
  for (size_t rank = 0; rank < ranks_.size(); ++rank) {
    const RankState& r = ranks_[rank];
    RankSnapshot o;
    o.rank = static_cast<int>(rank);
    o.host = r.info.host;
    o.device = r.info.device;
    o.local_rank = r.info.local_rank;
    o.pid = r.info.pid;
    o.last_heartbeat_age_seconds = std::chrono::duration<double>(t - r.last_heartbeat).count();
    o.last_step = r.last_step;
    o.alive = r.alive;
    o.shut_down = r.shut_down;
    o.exit_code = r.exit_code;
    o.metrics_steps_received = r.metrics_steps;
    o.events_received = r.events;
    o.last_values = r.last_values;
    s.ranks.push_back(std::move(o));
  }
  return s;
}

std::vector<EventRecord> JobState::recent_events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {events_.begin(), events_.end()};
}

}  // namespace keel::coord
