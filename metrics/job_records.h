// What the coordinator knows about a job, as plain records: the job's phase, the step metrics and
// events workers report (StepRecord, EventRecord), and a snapshot of the job and its ranks for
// /metrics and `keel-coordinator` status. The coordinator's JobState produces them; the Prometheus
// exporter of this folder reads them, so metrics/ stays below the coordinator. Torch-free.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace keel::coord {

// WAITING (rendezvous) -> RUNNING -> STOPPING (some ranks exited normally) -> COMPLETED;
// any of them -> FAILED (a rank died or exited with an error). A registration after FAILED starts
// the next generation (a restart in place).
enum class JobPhase { kWaiting, kRunning, kStopping, kFailed, kCompleted };
const char* phase_name(JobPhase phase);
inline bool is_terminal(JobPhase p) {
  return p == JobPhase::kFailed || p == JobPhase::kCompleted;
}

// One step's values from one rank (keys: metrics/metric_keys.h).
struct StepRecord {
  int64_t step = 0;
  std::map<std::string, double> values;
};

// One stability event from one rank (kinds: metrics/event_kinds.h).
struct EventRecord {
  int rank = 0;
  int64_t step = 0;
  std::string kind, json_evidence, action;
};

struct RankSnapshot {
  int rank = 0;
  std::string host, device;
  int local_rank = 0;
  int64_t pid = 0;
  double last_heartbeat_age_seconds = 0;
  int64_t last_step = -1;
  bool alive = true;
  bool shut_down = false;
  int exit_code = 0;
  uint64_t metrics_steps_received = 0;
  uint64_t events_received = 0;
  std::map<std::string, double> last_values;
};

struct JobSnapshot {
  std::string job_id;
  JobPhase phase = JobPhase::kWaiting;
  std::string message;
  int world_size = 0, dp_size = 0, tp_size = 0;
  int registered = 0;
  int64_t generation = 0;
  int64_t latest_committed_step = -1;
  std::vector<RankSnapshot> ranks;  // empty until the rendezvous completes
};

// Where the exporter reads the job's current state at scrape time (JobState::snapshot).
using JobSnapshotSource = std::function<JobSnapshot()>;

}  // namespace keel::coord
