// Process exit codes of `keel train`, `keel-worker` and the local job launcher: one table, because
// the number crosses process boundaries. A worker ends with it, the launcher decides from it
// whether to restart the job (launch/local_job.cpp), the stability monitor's abort message quotes
// it, and schedulers and scripts (bench/, scripts/) read it. Torch-free.
#pragma once

namespace keel {

// Unscoped on purpose: the codes are process exit statuses and mix freely with `int`.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,           // an error with a message (bad data, bad checkpoint, I/O, ...)
  kExitConfigError = 2,     // a bad config key or value (also bad command-line arguments)
  kExitStabilityAbort = 3,  // the stability monitor gave up (rollbacks exhausted): distinct from
                            // success and failure so a scheduler can tell "the run was unstable"
  kExitJobFailed = 4,       // another rank failed or the coordinator declared the job failed
  kExitRemedyRestart = 5,   // keel-worker: the monitor asks the launcher for a remedy restart
  kExitPreempted = 6,       // SIGTERM/SIGUSR1 (preemption): the step finished, a checkpoint was
                            // saved; requeue the job with --resume and it continues exactly
  kExitInterrupted = 130,   // SIGINT (Ctrl-C) on `keel train`: 128 + SIGINT, as shells report it; the
                            // step finished and a checkpoint was saved (a second Ctrl-C: stopped at
                            // once, from the last saved checkpoint); run_info.json says "interrupted"
};

}  // namespace keel
