// Local job launcher (see local_job.h).
#include "launch/local_job.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <csignal>
#include <deque>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/check.h"
#include "common/exit_codes.h"
#include "common/fs.h"
#include "common/preemption.h"
#include "rpc/coordinator_client.h"
#include "parallel/communicator_factory.h"
#include "parallel/process_groups.h"
#include "device/device_memory.h"
#include "launch/run_lifecycle.h"

namespace keel::launch {
namespace {

using Clock = std::chrono::steady_clock;

std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = dirs.find(':', start);
    const std::string dir = dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  throw KeelError("'" + program + "' is not on PATH (install Open MPI: scripts/setup.sh does)");
}

// The value after `prefix` on a line like "listening on 127.0.0.1:4000".
std::optional<std::string> after(const std::string& line, const std::string& prefix) {
  if (line.rfind(prefix, 0) != 0) return std::nullopt;
  return line.substr(prefix.size());
}

// The last `count` lines written to `path` after its first `offset` bytes ("" when it cannot be
// read): what a coordinator that ended early said, for the user who does not have its log on the
// terminal. The offset leaves out the lines of earlier attempts and resumes in the same log.
std::string last_lines(const std::string& path, std::uintmax_t offset, size_t count) {
  std::ifstream in(path);
  in.seekg(static_cast<std::streamoff>(offset));
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > count) lines.pop_front();
  }
  std::string text;
  for (const auto& line : lines) text += (text.empty() ? "" : "\n") + line;
  return text;
}

// One attempt: coordinator + workers until the workers end. Returns the job's exit code.
int run_attempt(const RunConfig& config, const std::string& config_file, const LaunchOptions& options, bool resume) {
  const bool on_cuda = trains_on_cuda(config.train.device);
  const std::string backend = parallel::resolve_backend(config.parallel.backend, options.nproc, on_cuda);

  auto coordinator_options = CoordinatorProcess::Options::from(config, options.run_dir);
  coordinator_options.world_size = options.nproc;
  coordinator_options.heartbeat_timeout_seconds = options.heartbeat_timeout_seconds;
  // Its record of committed steps and generations outlives one coordinator process.
  coordinator_options.state_dir = options.run_dir + "/coordinator";
  coordinator_options.debug = options.debug;
  CoordinatorProcess coordinator(coordinator_options);
  spdlog::info("coordinator on {} (metrics: {})", coordinator.address(),
               coordinator.metrics_address().empty() ? "off" : "http://" + coordinator.metrics_address() + "/metrics");

  std::vector<std::string> worker_args = {process::sibling_program("keel-worker"), config_file, "--coordinator",
                                          coordinator.address(), "--run-dir", options.run_dir};
  if (resume) worker_args.push_back("--resume");
  if (options.debug) worker_args.push_back("--debug");
  // --resume-from applies to the first attempt; a restart resumes from the newest committed step.
  if (resume && options.resume_from_step >= 0 && !options.restarted) {
    worker_args.push_back("--resume-from");
    worker_args.push_back(std::to_string(options.resume_from_step));
  }
  std::vector<std::unique_ptr<process::ChildProcess>> workers;
  if (backend == "mpi") {
    std::vector<std::string> argv = {find_on_path("mpirun"), "--allow-run-as-root", "--oversubscribe",
                                     "--bind-to", "none", "-np", std::to_string(options.nproc)};
    // mpirun's own "Primary job terminated normally, but 1 process returned a non-zero exit code"
    // block says less than the launcher's "job failed" line: the user sees it with --debug only.
    if (!options.debug) argv.insert(argv.begin() + 1, "--quiet");
    argv.insert(argv.end(), worker_args.begin(), worker_args.end());
    process::SpawnOptions spawn;
    spawn.parent_death_signal = SIGTERM;  // mpirun kills its ranks at once on SIGTERM
    workers.push_back(std::make_unique<process::ChildProcess>(argv, spawn));
  } else {
    for (int rank = 0; rank < options.nproc; ++rank) {
      process::SpawnOptions spawn;
      // The launcher is gone (killed, or stopped at once by a second Ctrl-C): nothing of this rank
      // can be committed any more, and a SIGTERM would make it try to save.
      spawn.parent_death_signal = SIGKILL;
      spawn.env = {{"RANK", std::to_string(rank)},
                   {"LOCAL_RANK", std::to_string(rank)},
                   {"WORLD_SIZE", std::to_string(options.nproc)}};
      workers.push_back(std::make_unique<process::ChildProcess>(worker_args, spawn));
    }
  }

  // Supervise: the job ends when every worker process has ended. When one fails, or the
  // coordinator declares the job failed (a rank died or hung), the rest get a grace period to
  // leave on their own, then are stopped.
  coord::ClientOptions status_options;
  status_options.tls_ca_file = config.coordinator.tls_ca;
  coord::CoordinatorClient status_client(
      coordinator.address(), coord::resolve_coordinator_token(config.coordinator.token_file), status_options);
  std::optional<Clock::time_point> failed_since;
  std::string failure;
  // A rank's error crosses processes with its source file:line; the user reads it without.
  const auto shown = [&] { return options.debug ? failure : without_source_locations(failure); };
  int exit_code = kExitOk;
  bool preemption_forwarded = false;
  auto last_status_poll = Clock::now();
  for (;;) {
    if (preemption::requested() && !preemption_forwarded) {
      // Preempted: the workers finish their step, save and exit 6. mpirun forwards SIGUSR1 (not
      // SIGTERM, on which it kills its ranks at once) to every rank.
      preemption_forwarded = true;
      spdlog::warn("signal {}: asking the workers to save and stop", preemption::signal_number());
      for (auto& worker : workers) worker->signal(backend == "mpi" ? SIGUSR1 : SIGTERM);
    }
    if (!failed_since) {
      // Exit codes 0 (every rank shut down) and 1 (job failed, after telling the ranks) are its
      // normal ends; anything else (killed by a signal, 128 + N) is its death.
      if (auto code = coordinator.try_wait(); code && *code != 0 && *code != 1) {
        // The coordinator died: nothing can commit, and every rank's heartbeats fail. End the attempt
        // now; the restart resumes from the last committed checkpoint with a new coordinator.
        failed_since = Clock::now() - std::chrono::seconds(10);
        failure = "the coordinator (pid " + std::to_string(coordinator.pid()) + ") exited with code " +
                  std::to_string(*code) + " while the workers were running";
        if (!coordinator.log_file().empty()) failure += " (its log: " + coordinator.log_file() + ")";
      }
    }
    bool all_done = true;
    for (auto& worker : workers) {
      auto code = worker->try_wait();
      if (!code) {
        all_done = false;
      } else if (*code != kExitOk && exit_code == kExitOk) {
        exit_code = *code;
        if (!failed_since) {
          failed_since = Clock::now();
          failure = worker->name() + " (pid " + std::to_string(worker->pid()) + ") exited with code " +
                    std::to_string(*code);
        }
      }
    }
    if (all_done) break;
    if (!failed_since && Clock::now() - last_status_poll > std::chrono::seconds(1)) {
      last_status_poll = Clock::now();
      try {
        const auto status = status_client.job_status();
        if (status.state == "FAILED") {
          failed_since = Clock::now();
          failure = "the coordinator declared the job failed: " + status.message;
        }
      } catch (const std::exception&) {
        // the coordinator's own exit is seen through the workers
      }
    }
    if (failed_since && Clock::now() - *failed_since > std::chrono::seconds(10)) {
      spdlog::warn("stopping the remaining workers: {}", shown());
      // SIGKILL: nothing of theirs can be committed any more (a SIGTERM would make them try to save).
      for (auto& worker : workers) worker->stop(0.0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& worker : workers) {
    const int code = worker->wait();
    if (code != kExitOk && exit_code == kExitOk) exit_code = code;
  }
  if (!failure.empty()) spdlog::error("job failed: {}", shown());
  coordinator.finish(exit_code == kExitOk ? coordinator_options.metrics_linger_seconds + 5.0 : 0.0);
  if (!failure.empty() && exit_code == kExitOk) exit_code = kExitJobFailed;
  return exit_code;
}

}  // namespace

CoordinatorProcess::Options CoordinatorProcess::Options::from(const RunConfig& config, const std::string& run_dir) {
  Options options;
  options.dp = static_cast<int>(config.parallel.dp);
  options.tp = static_cast<int>(config.parallel.tp);
  options.run = config.run.name.empty() ? std::filesystem::path(run_dir).filename().string() : config.run.name;
  options.recipe = config.run.recipe;
  options.checkpoint_dir = run_dir + "/checkpoints";  // where worker/checkpoint_committer.cpp saves
  options.metrics_address = config.metrics.address;
  options.metrics_port = static_cast<int>(config.metrics.port);
  options.metrics_linger_seconds = config.metrics.linger_seconds;
  options.token_file = config.coordinator.token_file;
  options.tls_cert = config.coordinator.tls_cert;
  options.tls_key = config.coordinator.tls_key;
  options.log_file = coordinator_log_path(run_dir);
  return options;
}

void CoordinatorProcess::finish(double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline && !process_->try_wait())
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  process_->stop(5.0);
}

CoordinatorProcess::CoordinatorProcess(const Options& options) {
  std::vector<std::string> argv = {process::sibling_program("keel-coordinator"),
                                   "--listen", "127.0.0.1:0",
                                   "--world-size", std::to_string(options.world_size),
                                   "--dp", std::to_string(options.dp),
                                   "--tp", std::to_string(options.tp),
                                   "--job-id", options.job_id,
                                   "--heartbeat-timeout", std::to_string(options.heartbeat_timeout_seconds)};
  if (!options.run.empty()) argv.insert(argv.end(), {"--run", options.run});
  if (!options.recipe.empty()) argv.insert(argv.end(), {"--recipe", options.recipe});
  if (!options.metrics_address.empty()) argv.insert(argv.end(), {"--metrics-address", options.metrics_address});
  argv.insert(argv.end(), {"--metrics-port", std::to_string(options.metrics_port)});
  // Keep /metrics up a little after the job ends so a scrape sees its final state.
  argv.insert(argv.end(), {"--metrics-linger", std::to_string(options.metrics_linger_seconds)});
  if (!options.state_dir.empty()) argv.insert(argv.end(), {"--state-dir", options.state_dir});
  if (!options.checkpoint_dir.empty()) argv.insert(argv.end(), {"--checkpoint-dir", options.checkpoint_dir});
  // The token reaches it as a file or through the inherited environment, never on its command line.
  if (!options.token_file.empty()) argv.insert(argv.end(), {"--token-file", options.token_file});
  if (!options.tls_cert.empty()) argv.insert(argv.end(), {"--tls-cert", options.tls_cert, "--tls-key", options.tls_key});
  if (options.debug) argv.push_back("--debug");
  process::SpawnOptions spawn;
  spawn.capture_stdout = true;
  std::uintmax_t log_offset = 0;
  if (!options.debug && !options.log_file.empty()) {
    fs::make_dirs(std::filesystem::path(options.log_file).parent_path().string());
    log_file_ = options.log_file;
    std::error_code missing;
    log_offset = std::filesystem::file_size(log_file_, missing);
    if (missing) log_offset = 0;
    spawn.stderr_file = log_file_;
  }
  // Its parent gone, it must not serve on (it used to linger until the heartbeats timed out):
  // SIGINT stops it at once, where SIGTERM would wait for ranks to save (cli/coordinator_main.cpp).
  spawn.parent_death_signal = SIGINT;
  process_ = std::make_unique<process::ChildProcess>(argv, spawn);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline && (address_.empty() || metrics_.empty())) {
    auto line = process_->read_line(0.5);
    if (!line) {
      if (const auto code = process_->try_wait()) {
        const std::string said = log_file_.empty() ? "" : last_lines(log_file_, log_offset, 5);
        KEEL_CHECK(false, "keel-coordinator exited with code " << *code << " before serving"
                              << (said.empty() ? "" : ":\n" + said)
                              << (log_file_.empty() ? "" : "\n(its log: " + log_file_ + ")"));
      }
      continue;
    }
    if (auto value = after(*line, "listening on ")) address_ = *value;
    if (auto value = after(*line, "metrics on ")) metrics_ = *value;
    if (*line == "metrics off") metrics_ = "off";
  }
  KEEL_CHECK(!address_.empty(), "keel-coordinator did not report its address within 30 s");
  if (metrics_ == "off") metrics_.clear();
}

// The name deploy/mpirun/run.sh and deploy/slurm/keel.sbatch give it too.
std::string coordinator_log_path(const std::string& run_dir) { return run_dir + "/coordinator.log"; }

TrainResult launch_local_job(RunConfig config, const LaunchOptions& options) {
  KEEL_CHECK(options.nproc >= 1, "--nproc must be >= 1");
  parallel::check_layout(config.parallel.dp, config.parallel.tp, options.nproc);
  fs::make_dirs(options.run_dir);
  // The workers read the resolved config, so every rank and every restart trains the same job.
  const std::string config_file = options.run_dir + "/launch_config.yaml";
  fs::write_file_atomic(config_file, config.to_yaml());
  bool resume = options.resume;
  LaunchOptions attempt_options = options;
  for (int attempt = 0;; ++attempt) {
    const std::string worker_result = worker_result_path(options.run_dir);
    if (fs::exists(worker_result)) fs::remove_all(worker_result);  // a previous attempt's report
    const int exit_code = run_attempt(config, config_file, attempt_options, resume);
    if (exit_code == kExitOk || exit_code == kExitStabilityAbort || exit_code == kExitRemedyRestart ||
        exit_code == kExitConfigError || exit_code == kExitPreempted || preemption::requested() ||
        attempt >= options.max_restarts) {
      return read_worker_result(options.run_dir, exit_code);
    }
    spdlog::warn("job failed (exit code {}); restarting from the last committed checkpoint (restart {} of {})",
                 exit_code, attempt + 1, options.max_restarts);
    resume = true;
    attempt_options.restarted = true;
  }
}

}  // namespace keel::launch
