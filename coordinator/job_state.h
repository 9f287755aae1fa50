// The coordinator's job bookkeeping, free of gRPC types so it can be unit-tested directly:
// the DP x TP layout, the registration rendezvous and rank assignment, heartbeat tracking and
// failure detection, two-phase checkpoint commit, the generation counter, and the small state file
// (generation, committed steps) that lets a restarted coordinator continue where the last one
// stopped. One mutex guards everything; a condition variable wakes rendezvous and commit waiters.
// When it can see the run's checkpoint folder (JobOptions::disk), a step is recorded as committed
// only once it is sealed there (the commit rule: job_state_commit.cpp).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/check.h"
#include "coordinator/layout.h"
#include "metrics/job_records.h"

namespace keel::coord {

using SteadyClock = std::chrono::steady_clock;

// Why a request was refused; the service maps these one-to-one onto gRPC status codes.
enum class JobErrorCode {
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kDeadlineExceeded,
  kCancelled,
  kUnavailable,
};

class JobError : public KeelError {
 public:
  JobError(JobErrorCode code, const std::string& message) : KeelError(message), code_(code) {}
  JobErrorCode code() const { return code_; }

 private:
  JobErrorCode code_;
};

// What the coordinator can see of the run's checkpoint folder. keel-coordinator --checkpoint-dir
// wires it to checkpoint/ (cli/coordinator_main.cpp); tests inject fakes. Unset (the default), it
// sees no disk and a step counts as committed once every shard writer reported it.
struct CheckpointDisk {
  // "" when files of a save of `step` are on disk (being written, or sealed), else why not.
  std::function<std::string(int64_t step)> save_missing;
  // True once `step`'s folder is sealed: its manifest is written and its files are all there.
  std::function<bool(int64_t step)> sealed;
  bool visible() const { return save_missing && sealed; }
};

struct JobOptions {
  std::string job_id = "default";
  int world_size = 1;
  int dp_size = 0;  // 0: world_size / tp_size
  int tp_size = 1;
  double heartbeat_timeout_seconds = 5.0;     // a rank silent this long is dead -> job FAILED
  double rendezvous_timeout_seconds = 300.0;  // how long Register waits for the other workers
  std::string state_dir;                      // empty: nothing persisted
  CheckpointDisk disk;                        // unset: the protocol alone decides what is committed
  // Time source for heartbeat ages (tests inject a fake one); rendezvous waits use real time.
  std::function<SteadyClock::time_point()> clock;
};

// What a worker says about itself when it registers.
struct WorkerInfo {
  std::string host;
  int local_rank = 0;
  std::string device;
  int64_t pid = 0;
  int requested_world_size = 0;                          // 0: any
  int requested_rank = -1;                               // -1: any
  std::map<std::string, std::string> nccl_id_proposals;  // role ("world", "dp", "tp") -> 128 bytes
};

constexpr size_t kNcclIdBytes = 128;

struct GroupAssignment {
  std::string name;
  std::string nccl_unique_id;  // kNcclIdBytes bytes
  std::vector<int> ranks;
};

struct Assignment {
  int rank = -1;
  int world_size = 0, dp_size = 0, tp_size = 0, dp_rank = 0, tp_rank = 0;
  int64_t generation = 0;
  std::vector<GroupAssignment> groups;  // world, dp_<tp_rank>, tp_<dp_rank>
};

struct JobReport {
  JobPhase phase;
  std::string message;
};

struct ShardReport {
  int rank = 0;
  int64_t generation = 0;
  int64_t step = 0;
  std::string shard_name;
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
  // Every rank writes a shard of this step (a sharded optimizer's per-DP-rank files): world_size
  // writers instead of the tp_size DP-rank-0 ones.
  bool every_dp_rank = false;
};

class JobState {
 public:
  // Throws KeelError for a bad layout or a state dir that belongs to another job.
  explicit JobState(JobOptions options);

  const JobOptions& options() const { return options_; }
  const Layout& layout() const { return layout_; }

  // Joins the rendezvous and blocks until all workers registered (then returns this worker's
  // assignment), `deadline` passes (kDeadlineExceeded), `cancelled()` turns true (the caller went
  // away: kCancelled) or close() is called (kUnavailable). A worker that gives up leaves the
  // rendezvous so that it can register again.
  Assignment register_worker(const std::string& job_id, const WorkerInfo& worker,
                             SteadyClock::time_point deadline, const std::function<bool()>& cancelled = {});

  JobReport heartbeat(const std::string& job_id, int rank, int64_t generation, int64_t step);
  void record_metrics(const std::string& job_id, int rank, int64_t generation,
                      const std::vector<StepRecord>& steps, const std::vector<EventRecord>& events);

  // Phase two of a checkpoint: returns true once all writers reported `shard.step` (the tp_size
  // DP-rank-0 ranks, or all world_size ranks when the reports say every_dp_rank) (rank 0
  // may seal it now). If not yet, waits until `wait_deadline` for the others (pass a past time to
  // not wait). With the disk visible, a report of a step with no files on disk is refused
  // (kFailedPrecondition), and the step is recorded as committed only once sealed on disk.
  bool commit_shard(const std::string& job_id, const ShardReport& shard,
                    SteadyClock::time_point wait_deadline);
  int64_t latest_committed(const std::string& job_id) const;
  std::vector<int64_t> committed_steps() const;
  // Records the steps every writer reported that are sealed on disk by now (persisted at once).
  // Called on every report and rank shutdown, by the server's check loop and before answers that
  // name the latest committed step. A no-op without a visible disk.
  void record_sealed();

  void shutdown_rank(const std::string& job_id, int rank, int64_t generation, const std::string& reason,
                     int exit_code);

  JobSnapshot snapshot(const std::string& job_id) const;  // checks the job id
  JobSnapshot snapshot() const;
  std::vector<EventRecord> recent_events() const;  // the newest kMaxEvents

  // Declares every running rank whose last heartbeat is older than the timeout dead and fails the
  // job, naming the first such rank and its host. Returns how many ranks were newly declared dead.
  int check_heartbeats();

  // Waits until the job is COMPLETED or FAILED (or close() was called, or `timeout` passed).
  JobPhase wait_finished(SteadyClock::duration timeout);

  // Wakes every waiter with kUnavailable; later registrations are refused. For server shutdown.
  void close();

  static constexpr size_t kMaxEvents = 1000;
  static constexpr size_t kMaxCommittedSteps = 1000;

 private:
  struct Pending {
    uint64_t ticket;
    WorkerInfo info;
  };
  struct RankState {
    WorkerInfo info;
    SteadyClock::time_point last_heartbeat;
    int64_t last_step = -1;
    bool alive = true;
    bool shut_down = false;
    int exit_code = 0;
    uint64_t metrics_steps = 0, events = 0;
    std::map<std::string, double> last_values;
  };

  SteadyClock::time_point now() const { return options_.clock(); }
  void check_job_locked(const std::string& job_id) const;
  void validate_worker_locked(const WorkerInfo& w) const;
  RankState& running_rank_locked(int rank, int64_t generation);
  void complete_rendezvous_locked();
  void start_generation_locked();
  void fail_locked(const std::string& message);
  void remove_pending_locked(uint64_t ticket);
  std::string pending_summary_locked() const;
  void record_sealed_locked();
  void load_state();
  void persist_locked() const;
  JobSnapshot snapshot_locked() const;

  JobOptions options_;
  Layout layout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;

  JobPhase phase_ = JobPhase::kWaiting;
  std::string message_;
  int64_t generation_ = 0;
  bool closed_ = false;

  uint64_t next_ticket_ = 1;
  std::vector<Pending> pending_;                // registered, waiting for the rest
  std::map<uint64_t, Assignment> assignments_;  // results not yet picked up by their waiter
  std::vector<RankState> ranks_;                // by rank; empty until the rendezvous completes

  std::map<int64_t, std::map<int, ShardReport>> shards_;  // uncommitted steps: writer -> shard
  std::set<int64_t> agreed_;     // every writer reported; not yet sealed on disk (disk visible only)
  std::set<int64_t> committed_;  // recorded (and persisted) as committed
  std::deque<EventRecord> events_;
};

}  // namespace keel::coord
