// JobState: rendezvous, rank assignment, heartbeats, shutdown and snapshots (see job_state.h).
// Checkpoint commit, the persisted state file and snapshots live in job_state_commit.cpp.
#include "coordinator/job_state.h"

#include <algorithm>
#include <iomanip>
#include <random>
#include <sstream>

namespace keel::coord {
namespace {

[[noreturn]] void reject(JobErrorCode code, const std::string& message) {
  throw JobError(code, message);
}

// Opaque bytes for groups without a worker-supplied NCCL id (CPU/MPI runs never use them).
std::string random_bytes(size_t n) {
  std::random_device rd;  // /dev/urandom on Linux
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rd() & 0xff);
  return out;
}

std::string role_of(const std::string& group_name) {
  return group_name.substr(0, group_name.find('_'));  // "world", "dp_3" -> "dp", "tp_0" -> "tp"
}

std::string describe(const WorkerInfo& w) {
  std::ostringstream s;
  s << "host " << w.host << ", local rank " << w.local_rank << ", pid " << w.pid;
  return s.str();
}

}  // namespace

JobState::JobState(JobOptions options)
    : options_(std::move(options)), layout_(options_.world_size, options_.dp_size, options_.tp_size) {
  options_.dp_size = layout_.dp_size();
  KEEL_CHECK(!options_.job_id.empty(), "job id must not be empty");
  KEEL_CHECK(options_.heartbeat_timeout_seconds > 0,
             "heartbeat timeout must be > 0 s, got " << options_.heartbeat_timeout_seconds);
  if (!options_.clock) options_.clock = [] { return SteadyClock::now(); };
  load_state();  // sets generation_ to the persisted one + 1: this start is a (re)start
}

void JobState::check_job_locked(const std::string& job_id) const {
  if (job_id != options_.job_id) {
    reject(JobErrorCode::kNotFound,
           "unknown job id '" + (job_id.size() > 64 ? job_id.substr(0, 64) + "...'" : job_id + "'") +
               " (this coordinator serves job '" + options_.job_id + "')");
  }
}

void JobState::validate_worker_locked(const WorkerInfo& w) const {
  const int world = layout_.world_size();
  if (w.requested_world_size != 0 && w.requested_world_size != world) {
    reject(JobErrorCode::kInvalidArgument, "worker (" + describe(w) + ") expects world size " +
                                               std::to_string(w.requested_world_size) + " but job '" +
                                               options_.job_id + "' has world size " + std::to_string(world));
  }
  if (w.requested_rank < -1 || w.requested_rank >= world) {
    reject(JobErrorCode::kInvalidArgument, "requested rank " + std::to_string(w.requested_rank) +
                                               " is out of range [0, " + std::to_string(world) +
                                               ") (-1 means any)");
  }
  if (w.local_rank < 0) {
    reject(JobErrorCode::kInvalidArgument, "local rank must be >= 0, got " + std::to_string(w.local_rank));
  }
  for (const auto& [role, id] : w.nccl_id_proposals) {
    if (role != "world" && role != "dp" && role != "tp") {
      reject(JobErrorCode::kInvalidArgument,
             "unknown NCCL id role '" + role + "' (expected world, dp or tp)");
    }
    if (id.size() != kNcclIdBytes) {
      reject(JobErrorCode::kInvalidArgument, "NCCL id for role '" + role + "' has " +
                                                 std::to_string(id.size()) + " bytes, expected " +
                                                 std::to_string(kNcclIdBytes));
    }
  }
}

Assignment JobState::register_worker(const std::string& job_id, const WorkerInfo& worker,
                                     SteadyClock::time_point deadline,
                                     const std::function<bool()>& cancelled) {
  std::unique_lock<std::mutex> lock(mu_);
  check_job_locked(job_id);
  if (closed_) reject(JobErrorCode::kUnavailable, "coordinator is shutting down");
  validate_worker_locked(worker);
  if (phase_ == JobPhase::kFailed) {
    start_generation_locked();  // a worker of a restarted job: begin the next generation
  } else if (phase_ != JobPhase::kWaiting) {
    reject(JobErrorCode::kFailedPrecondition, "job '" + options_.job_id + "' is " + phase_name(phase_) +
                                                  " (generation " + std::to_string(generation_) + ", all " +
                                                  std::to_string(layout_.world_size()) +
                                                  " ranks registered); a worker cannot join it now");
  }
  for (const auto& p : pending_) {
    if (worker.requested_rank >= 0 && p.info.requested_rank == worker.requested_rank) {
      reject(JobErrorCode::kAlreadyExists, "rank " + std::to_string(worker.requested_rank) +
                                               " is already registered by " + describe(p.info));
    }
    if (p.info.host == worker.host && p.info.local_rank == worker.local_rank) {
      reject(JobErrorCode::kAlreadyExists,
             "host " + worker.host + " local rank " + std::to_string(worker.local_rank) +
                 " is already registered (pid " + std::to_string(p.info.pid) + ")");
    }
  }
  const uint64_t ticket = next_ticket_++;
  pending_.push_back({ticket, worker});
  if (static_cast<int>(pending_.size()) == layout_.world_size()) {
    complete_rendezvous_locked();
    cv_.notify_all();
  }
  // Wait in short slices so a caller that went away (cancelled) is noticed and leaves the rendezvous.
  for (;;) {
    auto it = assignments_.find(ticket);
    if (it != assignments_.end()) {
      Assignment a = std::move(it->second);
      assignments_.erase(it);
      return a;
    }
    const auto t = SteadyClock::now();
    if (closed_) {
      remove_pending_locked(ticket);
      reject(JobErrorCode::kUnavailable, "coordinator is shutting down");
    }
    if (t >= deadline) {
      const std::string summary = pending_summary_locked();
      remove_pending_locked(ticket);
      reject(JobErrorCode::kDeadlineExceeded,
             "rendezvous of job '" + options_.job_id + "' did not complete in time: " + summary);
    }
    if (cancelled && cancelled()) {
      remove_pending_locked(ticket);
      reject(JobErrorCode::kCancelled, "registration cancelled by the worker");
    }
    cv_.wait_until(lock, std::min(deadline, t + std::chrono::milliseconds(100)));
  }
}

std::string JobState::pending_summary_locked() const {
  std::ostringstream s;
  s << pending_.size() << " of " << layout_.world_size() << " workers registered";
  if (!pending_.empty()) {
    s << " (";
    for (size_t i = 0; i < pending_.size(); ++i) {
      s << (i ? ", " : "") << pending_[i].info.host << ":" << pending_[i].info.local_rank;
    }
    s << ")";
  }
  return s.str();
}

void JobState::remove_pending_locked(uint64_t ticket) {
  pending_.erase(
      std::remove_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.ticket == ticket; }),
      pending_.end());
}

void JobState::complete_rendezvous_locked() {
  const int world = layout_.world_size();
  std::vector<int> rank_of(pending_.size(), -1);
  std::vector<bool> taken(world, false);
  std::vector<size_t> any;
  for (size_t i = 0; i < pending_.size(); ++i) {
    const int r = pending_[i].info.requested_rank;
    if (r >= 0) {
      rank_of[i] = r;
      taken[r] = true;
    } else {
      any.push_back(i);
    }
  }
  // Workers without a rank fill the free ranks in (host, local_rank) order, so ranks of one host are
  // adjacent and TP groups stay on one host.
  std::stable_sort(any.begin(), any.end(), [&](size_t a, size_t b) {
    const auto& x = pending_[a].info;
    const auto& y = pending_[b].info;
    return std::tie(x.host, x.local_rank) < std::tie(y.host, y.local_rank);
  });
  int next_free = 0;
  for (size_t i : any) {
    while (taken[next_free]) ++next_free;
    rank_of[i] = next_free;
    taken[next_free] = true;
  }

  ranks_.assign(world, RankState{});
  std::vector<const WorkerInfo*> by_rank(world, nullptr);
  const auto t = now();
  for (size_t i = 0; i < pending_.size(); ++i) {
    RankState& r = ranks_[rank_of[i]];
    r.info = pending_[i].info;
    r.last_heartbeat = t;  // registering counts as the first heartbeat
    by_rank[rank_of[i]] = &r.info;
  }

  // A group's NCCL id is the one its lowest rank proposed for the group's role, else random bytes.
  std::map<std::string, std::string> ids;
  for (const auto& g : layout_.all_groups()) {
    const auto& proposals = by_rank[g.ranks.front()]->nccl_id_proposals;
    auto it = proposals.find(role_of(g.name));
    ids[g.name] = it != proposals.end() ? it->second : random_bytes(kNcclIdBytes);
  }

  for (size_t i = 0; i < pending_.size(); ++i) {
    const int rank = rank_of[i];
    Assignment a;
    a.rank = rank;
    a.world_size = world;
    a.dp_size = layout_.dp_size();
    a.tp_size = layout_.tp_size();
    a.dp_rank = layout_.dp_rank(rank);
    a.tp_rank = layout_.tp_rank(rank);
    a.generation = generation_;
    for (auto& g : layout_.groups_of(rank)) a.groups.push_back({g.name, ids[g.name], g.ranks});
    assignments_[pending_[i].ticket] = std::move(a);
  }
  pending_.clear();
  phase_ = JobPhase::kRunning;
  message_.clear();
}

void JobState::start_generation_locked() {
  ++generation_;
  phase_ = JobPhase::kWaiting;
  message_.clear();
  ranks_.clear();
  shards_.clear();  // a checkpoint left incomplete by the failed generation never completes
  record_sealed_locked();
  agreed_.clear();  // and one agreed but never sealed is not waited for either
  persist_locked();
}

void JobState::fail_locked(const std::string& message) {
  if (is_terminal(phase_)) return;  // the first failure is the one that explains the others
  phase_ = JobPhase::kFailed;
  message_ = message;
  cv_.notify_all();
}

JobState::RankState& JobState::running_rank_locked(int rank, int64_t generation) {
  if (rank < 0 || rank >= layout_.world_size()) {
    reject(JobErrorCode::kInvalidArgument, "rank " + std::to_string(rank) + " is out of range [0, " +
                                               std::to_string(layout_.world_size()) + ")");
  }
  if (generation != generation_) {
    reject(JobErrorCode::kFailedPrecondition, "stale generation " + std::to_string(generation) + " (job '" +
                                                  options_.job_id + "' is at generation " +
                                                  std::to_string(generation_) + "; it was restarted)");
  }
  if (ranks_.empty()) {
    reject(JobErrorCode::kFailedPrecondition,
           "the rendezvous of generation " + std::to_string(generation_) + " is not complete");
  }
  return ranks_[rank];
}

JobReport JobState::heartbeat(const std::string& job_id, int rank, int64_t generation, int64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  check_job_locked(job_id);
  RankState& r = running_rank_locked(rank, generation);
  r.last_heartbeat = now();
  r.last_step = std::max(r.last_step, step);
  return {phase_, message_};
}

void JobState::record_metrics(const std::string& job_id, int rank, int64_t generation,
                              const std::vector<StepRecord>& steps, const std::vector<EventRecord>& events) {
  std::lock_guard<std::mutex> lock(mu_);
  check_job_locked(job_id);
  RankState& r = running_rank_locked(rank, generation);
  for (const auto& s : steps) {
    if (s.step >= r.last_step) r.last_values = s.values;
    r.last_step = std::max(r.last_step, s.step);
  }
  r.metrics_steps += steps.size();
  r.events += events.size();
  for (const auto& e : events) {
    events_.push_back(e);
    events_.back().rank = rank;
    if (events_.size() > kMaxEvents) events_.pop_front();
  }
}

void JobState::shutdown_rank(const std::string& job_id, int rank, int64_t generation,
                             const std::string& reason, int exit_code) {
  std::lock_guard<std::mutex> lock(mu_);
  check_job_locked(job_id);
  RankState& r = running_rank_locked(rank, generation);
  record_sealed_locked();  // rank 0 sealed its last checkpoint before it shuts down
  r.shut_down = true;
  r.exit_code = exit_code;
  if (exit_code != 0) {
    fail_locked("rank " + std::to_string(rank) + " (" + describe(r.info) + ") exited with code " +
                std::to_string(exit_code) + (reason.empty() ? "" : ": " + reason));
    return;
  }
  if (is_terminal(phase_)) return;
  phase_ = JobPhase::kStopping;
  const bool all_done = std::all_of(ranks_.begin(), ranks_.end(),
                                    [](const RankState& s) { return s.shut_down && s.exit_code == 0; });
  if (all_done) {
    phase_ = JobPhase::kCompleted;
    message_ = "all " + std::to_string(ranks_.size()) + " ranks shut down normally";
  }
  cv_.notify_all();
}

int JobState::check_heartbeats() {
  std::lock_guard<std::mutex> lock(mu_);
  if (phase_ != JobPhase::kRunning && phase_ != JobPhase::kStopping) return 0;
  const auto t = now();
  const auto timeout = std::chrono::duration<double>(options_.heartbeat_timeout_seconds);
  int newly_dead = 0;
  std::ostringstream first;
  for (size_t rank = 0; rank < ranks_.size(); ++rank) {
    RankState& r = ranks_[rank];
    const std::chrono::duration<double> age = t - r.last_heartbeat;
    if (r.shut_down || !r.alive || age <= timeout) continue;
    r.alive = false;
    if (newly_dead++ == 0) {
      first << "rank " << rank << " (" << describe(r.info) << ") missed heartbeats for " << std::fixed
            << std::setprecision(1) << age.count() << " s (timeout " << options_.heartbeat_timeout_seconds
            << " s, last step " << r.last_step << ")";
    }
  }
  if (newly_dead > 1) first << " and " << newly_dead - 1 << " more rank(s) are silent";
  if (newly_dead > 0) fail_locked(first.str());
  return newly_dead;
}

JobPhase JobState::wait_finished(SteadyClock::duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return is_terminal(phase_) || closed_; });
  return phase_;
}

void JobState::close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

}  // namespace keel::coord
