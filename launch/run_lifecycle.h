// The files that say where a run stands, written in one place: run_info.json in the run directory
// (status running -> completed | stopped | aborted | preempted | interrupted | failed |
// remedy_restart, the parent
// run, timings and final figures; `keel runs`, `keel compare` and scripts/ read it), the run's
// import into the SQLite run registry once it ends, and worker_result.json, through which rank 0
// of a distributed job hands its TrainResult to the launcher. Every command that runs training
// goes through here, so the fields and the status vocabulary cannot drift apart. Torch-free.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "worker/run_config.h"
#include "worker/trainer.h"

namespace keel::launch {

// How a run ended, as finish() recorded it.
struct RunEnd {
  std::string status;       // completed | stopped | aborted | preempted | interrupted | failed
  bool finished = false;    // it reached train.steps (so "train longer" rather than "resume")
  double wall_seconds = 0;  // since the run started (a remedy child's include its parent's)
  double tokens_per_second = 0;  // the whole run's, by metrics/throughput.h; NaN: no step timed
};

// The final step of `run_dir` when run_info.json says it completed; nullopt otherwise. A resume of
// such a run has nothing to train (keel train says so rather than overwrite its record).
std::optional<int64_t> completed_step(const std::string& run_dir);

// One run's run_info.json from start to end. The registry import after each end is best-effort:
// a registry problem is a warning, never a failed run.
class RunLifecycle {
 public:
  // Starts the record of `run_dir`: status "running", the start time, and the parent run, which
  // for an uptraining run (train.init_from = PARENT/checkpoints/step_N) is the run that wrote it.
  RunLifecycle(const RunConfig& config, std::string run_dir);

  const std::string& run_dir() const { return run_dir_; }
  // Where a remedy restart of this run trains: a sibling folder named after it.
  std::string remedy_child_dir() const { return run_dir_ + "-remedy"; }

  // The monitor asked for a remedy restart: this run ends as "remedy_restart" with `message`.
  void end_for_remedy_restart(const std::string& message);
  // The remedy child (recipe `child_recipe`, run directory remedy_child_dir()) starts with this run
  // as its parent; from now on this object records the child. The wall clock keeps running, so the
  // child's wall_seconds covers the whole escalation.
  void continue_as_remedy_child(const std::string& child_recipe);

  // Ends the record with the result's figures and a status from its exit code, and imports the run.
  RunEnd finish(const TrainResult& result);
  // Ends the record as "failed" with `error` (what the user is told) and `exit_code`, for a run
  // whose training threw (bad data, a config the data contradicts, a crash of the step) instead of
  // returning a result: run_info.json must not say "running" for a run that is over.
  void fail(const std::string& error, int exit_code);
  // Ends the record as "interrupted" (kExitInterrupted) with `message` at once, for a user who
  // pressed Ctrl-C twice: may be called from another thread while training goes on, just before
  // the process ends without saving (the last saved checkpoint is where a resume starts).
  void interrupt_now(const std::string& message);

 private:
  void write() const;
  void import_into_registry() const;
  void end(const std::string& status, const std::string& message, int exit_code);
  double run_tokens_per_second() const;

  mutable std::mutex mutex_;  // interrupt_now() comes from the interrupt thread

  std::string runs_root_;
  int64_t planned_steps_;
  std::string run_dir_;
  nlohmann::json info_;
  std::chrono::steady_clock::time_point start_;
};

// worker_result.json: what rank 0 of a distributed job reports to the launcher that started it.
std::string worker_result_path(const std::string& run_dir);
// Written by keel-worker's rank 0; `exit_code` is the worker's process exit code.
void write_worker_result(const std::string& run_dir, const TrainResult& result, int exit_code);
// The TrainResult of a job whose workers exited with `exit_code`: kExitRemedyRestart becomes
// remedy_restart_requested with kExitOk, kExitPreempted sets preempted. Without the file (a job
// that died before reporting) only the exit code is known.
TrainResult read_worker_result(const std::string& run_dir, int exit_code);

}  // namespace keel::launch
