// `keel-worker CONFIG --coordinator HOST:PORT [--run-dir DIR] [--resume] [--set section.key=value ...]`
//
// One training process of a distributed job, started by mpirun, srun, or `keel train --nproc N`.
// This main parses the command line; joining the job (rank environment, coordinator registration,
// process groups, the failure watchdog, preemption, worker_result.json) is
// launch::run_worker (launch/worker_bootstrap.h). Exit codes: common/exit_codes.h. Errors are one
// line without source file:line unless --debug (which `keel --debug train --nproc N` passes on).
// The coordinator token comes from coordinator.token_file or $KEEL_COORDINATOR_TOKEN and TLS from
// coordinator.tls_ca (worker/run_config.h); the token is never logged.
#include <spdlog/spdlog.h>

#include "cli/cli_util.h"
#include "common/crash_handler.h"
#include "launch/worker_bootstrap.h"

namespace keel::cli {
namespace {

void add_worker_options(CLI::App& app, launch::WorkerOptions& options) {
  app.add_option("config", options.config_path, "recipe config (configs/*.yaml)")->required();
  app.add_option("--coordinator", options.coordinator_address, "the keel-coordinator's HOST:PORT")->required();
  app.add_option("--run-dir", options.run_dir, "run directory shared by all ranks (default: RUNS_ROOT/RECIPE)");
  app.add_option("--job-id", options.job_id, "job id the coordinator serves")->capture_default_str();
  app.add_option("--set", options.overrides, "override a config key: section.key=value (repeatable)")->take_all();
  app.add_flag("--resume", options.resume, "continue from the newest complete checkpoint of the run directory");
  app.add_option("--resume-from", options.resume_from_step,
                 "resume from this checkpoint step (newer ones are set aside)");
  app.add_option("--heartbeat-interval", options.heartbeat_seconds, "seconds between heartbeats")
      ->capture_default_str();
}

int worker_command(int argc, char** argv) {
  CLI::App app("One rank of a distributed Keel training job", "keel-worker");
  launch::WorkerOptions options;
  add_worker_options(app, options);
  bool debug_errors = false;
  app.add_flag("--debug", debug_errors, "errors keep the source file and line where they were raised");
  if (int code = parse_args(app, std::vector<std::string>(argv + 1, argv + argc)); code >= 0) return code;
  set_debug(debug_errors);
  options.debug = debug_errors;
  return run_guarded("worker", [&]() -> int { return launch::run_worker(options, &argc, &argv); });
}

}  // namespace
}  // namespace keel::cli

int main(int argc, char** argv) {
  spdlog::flush_on(spdlog::level::info);
  keel::install_crash_handler();
  return keel::cli::worker_command(argc, argv);
}
