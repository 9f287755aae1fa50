// The launcher of `keel train`: starts the keel-coordinator as its own process (never a thread of a
// worker: it serves /metrics through civetweb, which cannot start threads in a process that loaded
// LibTorch CUDA) and, for `--nproc N`, N keel-worker processes on this machine; supervises them and
// restarts a failed job from its last committed checkpoint (`--max-restarts`).
//
// Workers are started through `mpirun` when the job communicates through MPI (CPU), and directly
// with torchrun-style variables (RANK, LOCAL_RANK, WORLD_SIZE) for NCCL or a world of one.
//
// Faults: a worker that dies or hangs fails the job (the coordinator's heartbeats), and so does the
// coordinator dying (its committed steps survive in RUN_DIR/coordinator); either way the job is
// restarted from the last committed checkpoint. Preemption: a SIGTERM to `keel train` is forwarded
// to the workers (SIGUSR1 through mpirun, which forwards only that; SIGTERM to direct children),
// which finish their step, save and exit 6 (kExitPreempted); that is never restarted here.
//
// Security (issue 28): the coordinator and the workers read `keel train`'s per-job token from the
// environment it sets (cli/train_command.cpp), never from a command line; the coordinator is told
// the run's checkpoints folder (--checkpoint-dir), so it records only steps sealed on disk.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/process.h"
#include "worker/run_config.h"
#include "worker/trainer.h"

namespace keel::launch {

// A keel-coordinator child process serving one job.
class CoordinatorProcess {
 public:
  struct Options {
    int world_size = 1, dp = 1, tp = 1;
    std::string job_id = "default";
    std::string run, recipe;        // labels of the exported metrics
    static Options from(const RunConfig& config, const std::string& run_dir);
    double heartbeat_timeout_seconds = 5.0;
    std::string metrics_address;    // empty: the coordinator's default (loopback)
    int metrics_port = 0;           // 0: a free port; -1: no /metrics
    double metrics_linger_seconds = 5.0;  // /metrics stays up this long after the job ends
    std::string state_dir;          // --state-dir (committed steps, generation); empty: none
    // --checkpoint-dir (RUN_DIR/checkpoints): commits only of steps written there, records only
    // steps sealed there; empty: the protocol alone
    std::string checkpoint_dir;
    std::string token_file;         // coordinator.token_file; the token may also come from the environment
    std::string tls_cert, tls_key;  // serve TLS
    // Where its stderr (the job's phases and end, its errors) is appended, so the user's terminal
    // shows the run, not the coordinator's bookkeeping; from() picks coordinator_log_path. Empty,
    // or with debug: the terminal.
    std::string log_file;
    bool debug = false;  // `keel --debug`: passes --debug (errors with source file:line)
  };
  explicit CoordinatorProcess(const Options& options);
  const std::string& address() const { return address_; }          // gRPC HOST:PORT
  const std::string& metrics_address() const { return metrics_; }  // HOST:PORT or "" when off
  // Waits up to `seconds` for the coordinator to exit by itself (after the job it lingers so a last
  // scrape sees the final state), then stops it.
  void finish(double seconds);
  std::optional<int> try_wait() { return process_->try_wait(); }  // its exit code once it ended
  pid_t pid() const { return process_->pid(); }
  // The file its output goes to, "" when the terminal has it.
  const std::string& log_file() const { return log_file_; }

 private:
  std::unique_ptr<process::ChildProcess> process_;
  std::string address_, metrics_, log_file_;
};

// RUN_DIR/coordinator.log: the keel-coordinator's output, every attempt and resume of a run appended.
std::string coordinator_log_path(const std::string& run_dir);

struct LaunchOptions {
  std::string run_dir;
  bool resume = false;
  int64_t resume_from_step = -1;  // with resume: this checkpoint (the first attempt only)
  bool restarted = false;         // a restart after a failure (resumes from the newest commit)
  int nproc = 1;
  int max_restarts = 0;
  double heartbeat_timeout_seconds = 5.0;
  // `keel --debug`: the coordinator's output on the terminal, and errors of every process with
  // their source file:line (--debug to keel-coordinator and keel-worker).
  bool debug = false;
};

// Runs the job described by `config` on `nproc` local worker processes to its end, restarting it
// from the last committed checkpoint up to max_restarts times when it fails (not when the stability
// monitor aborts it). Returns what rank 0 reported (worker_result.json).
TrainResult launch_local_job(RunConfig config, const LaunchOptions& options);

}  // namespace keel::launch
