// The worker side of a distributed job: what one keel-worker process does between its command line
// and its exit code, kept out of cli/ so the program is a thin main. It reads its rank from the
// launcher's environment (parallel/rank_env.h), registers with the coordinator (rank, DP x TP
// layout, NCCL ids), builds the world communicator and its DP/TP groups, and trains
// (worker/trainer.h). A watchdog leaves the job promptly when the coordinator declares it failed
// (another rank died or hung): NCCL communicators are aborted and the process exits with
// kExitJobFailed, since a rank blocked in a collective whose peer is gone would otherwise wait
// forever. Preemption (SIGTERM, or SIGUSR1 which mpirun forwards) ends the job after the current
// step with a checkpoint and kExitPreempted. Rank 0 hands its result to the launcher through
// worker_result.json (launch/run_lifecycle.h). Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel::launch {

// What keel-worker's command line says; the defaults are its documented ones.
struct WorkerOptions {
  std::string config_path;                 // recipe config
  std::vector<std::string> overrides;      // --set section.key=value
  std::string run_dir;                     // shared by all ranks; "" = RUNS_ROOT/(run.name or recipe)
  std::string coordinator_address;         // the keel-coordinator's HOST:PORT
  std::string job_id = "default";          // the job the coordinator serves
  bool resume = false;                     // continue from the newest complete checkpoint
  int64_t resume_from_step = -1;           // resume from this checkpoint (newer ones set aside)
  double heartbeat_seconds = 0.5;          // between heartbeats
  bool debug = false;                      // keep source file:line in messages (keel --debug)
};

// Runs this rank to the end of its job and returns the process exit code (common/exit_codes.h):
// the trainer's, or kExitRemedyRestart when the monitor asks the launcher for a remedy restart.
// `argc`/`argv` go to MPI_Init when the job communicates through MPI. Errors are thrown
// (ConfigError for a bad config) after the coordinator heard that this rank failed.
int run_worker(const WorkerOptions& options, int* argc, char*** argv);

}  // namespace keel::launch
