// The training loop of one worker: model, data, AdamW, LR schedule, stability monitor, periodic
// validation and checkpoints, metrics.jsonl / events.jsonl, and the progress line.
// The header is Torch-free so mains and launchers stay cheap to compile.
#pragma once

#include <limits>
#include <string>

#include "common/exit_codes.h"  // TrainResult::exit_code; users of the trainer keep getting the codes
#include "worker/run_config.h"

namespace keel::parallel {
class ProcessGroups;
}
namespace keel::coord {
class CoordinatorClient;
}

namespace keel {

struct TrainOptions {
  std::string run_dir;        // where config.yaml, metrics.jsonl, checkpoints/ go
  bool resume = false;        // continue from the newest complete checkpoint in run_dir
  int64_t resume_from_step = -1;  // with resume: this checkpoint instead (newer ones are set aside)
  bool interactive = false;   // draw a progress bar (stderr is a terminal)
  std::string parent_run;     // the run this one was restarted from (remedy restart), if any
  // Distributed runs (keel-worker): the DP x TP groups of this rank and its coordinator client.
  // nullptr: a world of one without a coordinator. Both borrowed; they outlive the run.
  parallel::ProcessGroups* groups = nullptr;
  coord::CoordinatorClient* coordinator = nullptr;
  int device_index = 0;       // CUDA device of this worker (its node-local rank)
};

struct TrainResult {
  int exit_code = kExitOk;
  int64_t final_step = 0;
  double final_val_loss = std::numeric_limits<double>::quiet_NaN();  // the last evaluation; NaN: none
  // this process's throughput (metrics/throughput.h: warm-up steps not timed); NaN: none timed
  double mean_tokens_per_second = std::numeric_limits<double>::quiet_NaN();
  int64_t peak_device_memory_bytes = 0;   // CUDA runs: peak bytes allocated
  int64_t optimizer_state_bytes = 0;      // AdamW moments this rank holds (its share when sharded)
  bool remedy_restart_requested = false;  // the monitor asked for a restart with the remedy recipe
  double lr_scale = 1;                    // remedy restart: the child run's LR = train.lr x this
  bool preempted = false;                 // stopped by a preemption signal after saving (kExitPreempted)
  std::string message;
};

// Trains one run to completion (or stop_at / abort). Throws KeelError for bad inputs.
TrainResult train_run(RunConfig config, const TrainOptions& options);

}  // namespace keel
