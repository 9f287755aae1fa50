// `keel train CONFIG [--set section.key=value ...] [--run-dir DIR] [--resume] [--nproc N] [--max-restarts K]
//  [--no-token]`
//
// Picks the run directory and trains: in this process beside a keel-coordinator process (which
// serves /metrics), or with --nproc N as a local distributed job of N keel-worker processes
// (launch/local_job.h). The coordinator always gets a random per-job token, loopback included, so
// another local user cannot drive the job (JobToken below; --no-token, for tests, leaves it out). On the monitor's remedy escalation it restarts from step 0 with the "Spike No
// More" remedy recipe (stability/remedy_recipe.h) as a child run linked to its parent. run_info.json
// and the registry import are launch::RunLifecycle's (launch/run_lifecycle.h); this file parses,
// calls and prints.
#include <spdlog/spdlog.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <regex>

#include <fmt/format.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/check.h"
#include "common/config.h"
#include "common/exit_codes.h"
#include "common/fs.h"
#include "common/preemption.h"
#include "common/process.h"
#include "launch/local_job.h"
#include "launch/run_lifecycle.h"
#include "metrics/throughput.h"
#include "parallel/process_groups.h"
#include "rpc/coordinator_client.h"
#include "rpc/token.h"
#include "stability/remedy_recipe.h"
#include "worker/progress.h"
#include "worker/trainer.h"

namespace keel::cli {
namespace {

struct TrainArgs {
  std::string config_path, run_dir;
  std::vector<std::string> overrides;
  bool resume = false, no_token = false;
  int64_t resume_from = -1;
  int nproc = 0, max_restarts = 0;
};

void add_train_options(CLI::App& app, TrainArgs& a) {
  app.add_option("config", a.config_path, "recipe config (configs/*.yaml)");
  app.add_option("--nproc", a.nproc,
                 "run as a distributed job of N local keel-worker processes (parallel.dp x parallel.tp = N)");
  app.add_option("--max-restarts", a.max_restarts,
                 "with --nproc: restart a failed job from its last committed checkpoint up to K times")
      ->capture_default_str();
  app.add_option("--set", a.overrides, "override a config key: section.key=value (repeatable)")->take_all();
  app.add_option("--run-dir", a.run_dir, "run directory (default: RUNS_ROOT/RECIPE-TIMESTAMP)");
  app.add_flag("--resume", a.resume, "continue from the newest complete checkpoint of the run directory");
  app.add_option("--resume-from", a.resume_from,
                 "continue from this checkpoint step of --run-dir (e.g. the last good one an abort names); "
                 "newer checkpoints are moved to checkpoints-set-aside/");
  app.add_flag("--no-token", a.no_token,
               "for tests only: do not give the job's coordinator a random per-job token, so any local user "
               "can drive it on loopback (a token from coordinator.token_file or $KEEL_COORDINATOR_TOKEN is "
               "still used)");
}

// The job's coordinator token. Unless the user gave one (coordinator.token_file, or
// $KEEL_COORDINATOR_TOKEN) or --no-token, this `keel train` makes a random one (rpc/token.h) and
// stores it in RUN_DIR/coordinator/token, a new file of mode 0600 in a folder of mode 0700 (for the
// user's own tools), and puts it into its own environment before any thread or child starts:
// from there the keel-coordinator it starts, every keel-worker (directly or through mpirun, which
// passes its environment to local ranks) and its in-process client read it
// (coord::resolve_coordinator_token). It never goes on a command line (ps shows those), into a
// config (configs are saved with every run and checkpoint) or into a log. The file goes when keel
// train ends; a resume makes a new token.
class JobToken {
 public:
  JobToken(bool no_token, const RunConfig& config, const std::string& run_dir) {
    if (no_token) {
      spdlog::warn("--no-token: the coordinator takes any local process's word (for tests only)");
      return;
    }
    if (!config.coordinator.token_file.empty() || std::getenv(coord::kTokenEnvironmentVariable)) return;
    const std::string folder = run_dir + "/coordinator";
    KEEL_CHECK(::mkdir(folder.c_str(), S_IRWXU) == 0 || errno == EEXIST,
               "cannot create '" << folder << "' for the coordinator token: " << std::strerror(errno));
    path_ = folder + "/token";
    const std::string token = coord::new_coordinator_token();
    coord::write_token_file(path_, token);
    KEEL_CHECK(::setenv(coord::kTokenEnvironmentVariable, token.c_str(), 1) == 0,
               "cannot set " << coord::kTokenEnvironmentVariable << ": " << std::strerror(errno));
    spdlog::info("coordinator: a per-job token, in {} (mode 0600)", path_);
  }
  ~JobToken() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  JobToken(const JobToken&) = delete;
  JobToken& operator=(const JobToken&) = delete;

 private:
  std::string path_;
};

// Ctrl-C. The first is a preemption request (the step finishes, a checkpoint is saved, the run ends
// "interrupted" with exit code 130); the second stops at once. That one comes on the interrupt
// thread (common/preemption.h) while training goes on, so the run it marks is published here under
// a lock. Children go with this process: they get a signal when it ends (process::SpawnOptions).
struct InterruptTarget {
  std::mutex mutex;
  launch::RunLifecycle* lifecycle = nullptr;
};
InterruptTarget g_interrupt_target;

class PublishForInterrupt {
 public:
  explicit PublishForInterrupt(launch::RunLifecycle& lifecycle) { set(&lifecycle); }
  ~PublishForInterrupt() { set(nullptr); }
  PublishForInterrupt(const PublishForInterrupt&) = delete;
  PublishForInterrupt& operator=(const PublishForInterrupt&) = delete;

 private:
  static void set(launch::RunLifecycle* lifecycle) {
    const std::lock_guard<std::mutex> lock(g_interrupt_target.mutex);
    g_interrupt_target.lifecycle = lifecycle;
  }
};

std::string resume_command(const std::string& run_dir) {
  return process::self_dir() + "/keel train --resume --run-dir " + run_dir;
}

void on_interrupt(int count) {
  if (count == 1) {
    spdlog::warn("Ctrl-C: finishing this step and saving a checkpoint (Ctrl-C again stops at once, "
                 "without saving)");
    return;
  }
  const std::lock_guard<std::mutex> lock(g_interrupt_target.mutex);  // held until the process ends
  std::string run_dir;
  if (auto* lifecycle = g_interrupt_target.lifecycle) {
    lifecycle->interrupt_now("stopped at once by a second Ctrl-C; a resume starts from the last saved checkpoint");
    run_dir = lifecycle->run_dir();
  }
  std::string text = fmt::format("\nkeel: INTERRUPTED at once by a second Ctrl-C (exit code {}); nothing was saved "
                                 "after the last checkpoint.\n", static_cast<int>(kExitInterrupted));
  if (!run_dir.empty()) text += "resume with:   " + resume_command(run_dir) + "\n";
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
  std::fflush(stdout);
  ::_exit(kExitInterrupted);  // the coordinator and workers get their parent-death signal
}

bool interrupted_by_user() { return preemption::signal_number() == SIGINT; }

std::string timestamp() {
  std::time_t now = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y%m%d-%H%M%S", std::localtime(&now));
  return buffer;
}

// The newest run folder of `recipe` under `runs_root`, or "".
std::string newest_run_of(const std::string& runs_root, const std::string& recipe) {
  if (!fs::exists(runs_root)) return "";
  std::string newest;
  for (const auto& name : fs::list_dir(runs_root)) {
    if (name.rfind(recipe + "-", 0) == 0 && fs::exists(runs_root + "/" + name + "/config.yaml"))
      newest = runs_root + "/" + name;  // names carry a sortable timestamp
  }
  return newest;
}

// The config, after --resume-from implied --resume. On --resume without a config, the run's own
// resolved config is used; its stop_at is cleared unless given again, so a run stopped early
// resumes to the end.
RunConfig load_train_config(TrainArgs& a) {
  if (a.resume_from >= 0) {
    KEEL_CHECK(!a.run_dir.empty(), "--resume-from needs --run-dir (the run to continue)");
    a.resume = true;
  }
  if (a.config_path.empty()) {
    KEEL_CHECK(a.resume && !a.run_dir.empty(), "a config file is needed (or --resume --run-dir DIR)");
    a.config_path = a.run_dir + "/config.yaml";
    a.overrides.insert(a.overrides.begin(), "train.stop_at=-1");
  }
  return RunConfig::load(a.config_path, a.overrides);
}

// --run-dir, else on --resume the recipe's newest run, else a new RUNS_ROOT/(name or RECIPE-TIMESTAMP).
std::string choose_run_dir(const TrainArgs& a, const RunConfig& config) {
  std::string run_dir = a.run_dir;
  if (run_dir.empty() && a.resume) run_dir = newest_run_of(config.run.runs_root, config.run.recipe);
  if (run_dir.empty())
    run_dir = config.run.runs_root + "/" +
              (config.run.name.empty() ? config.run.recipe + "-" + timestamp() : config.run.name);
  return run_dir;
}

// One run in this process, reporting to a coordinator process of its own (a world of one).
TrainResult train_in_process(const RunConfig& config, TrainOptions options) {
  auto coordinator_options = launch::CoordinatorProcess::Options::from(config, options.run_dir);
  coordinator_options.heartbeat_timeout_seconds = 30;  // one process: a long step must not look like a hang
  coordinator_options.debug = debug();  // its output on the terminal, not in RUN_DIR/coordinator.log
  launch::CoordinatorProcess coordinator(coordinator_options);
  spdlog::info("coordinator on {}", coordinator.address());
  if (!coordinator.metrics_address().empty())
    spdlog::info("metrics: http://{}/metrics", coordinator.metrics_address());
  coord::ClientOptions client_options;
  client_options.tls_ca_file = config.coordinator.tls_ca;
  client_options.coordinator_loss_timeout_seconds = config.coordinator.loss_timeout_seconds;
  coord::CoordinatorClient client(coordinator.address(),
                                  coord::resolve_coordinator_token(config.coordinator.token_file), client_options);
  coord::RegisterOptions registration;
  registration.device = config.train.device == "cpu" ? "cpu" : "auto";
  registration.requested_world_size = 1;
  registration.requested_rank = 0;
  client.register_worker(registration);
  client.start_heartbeats(std::chrono::milliseconds(1000));
  options.coordinator = &client;
  try {
    TrainResult result = train_run(config, options);
    client.shutdown(result.message.empty() ? "finished" : result.message, kExitOk);
    // After Ctrl-C the user waits for the prompt: no lingering for a last scrape.
    coordinator.finish(interrupted_by_user() ? 1.0 : coordinator_options.metrics_linger_seconds + 5.0);
    return result;
  } catch (const std::exception& e) {
    client.shutdown(std::string("failed: ") + e.what(), kExitError);
    throw;
  }
}

// Trains a run in this process, or with --nproc as a local job of keel-worker processes.
TrainResult train_once(const TrainArgs& a, const RunConfig& config, const TrainOptions& options) {
  if (a.nproc == 0) return train_in_process(config, options);
  launch::LaunchOptions launch_options;
  launch_options.nproc = a.nproc;
  launch_options.max_restarts = a.max_restarts;
  launch_options.resume_from_step = a.resume_from;
  launch_options.run_dir = options.run_dir;
  launch_options.resume = options.resume;
  launch_options.debug = debug();
  return launch::launch_local_job(config, launch_options);
}

// The monitor's escalation: the parent run ends as "remedy_restart" and a child run restarts from
// step 0 with the remedy recipe applied to the parent's config as --set overrides.
TrainResult restart_with_remedy(const TrainArgs& a, RunConfig& config, TrainOptions& options,
                                launch::RunLifecycle& lifecycle, const TrainResult& parent_result) {
  lifecycle.end_for_remedy_restart(parent_result.message);
  const RemedyRecipe remedy =
      remedy_recipe(config.run.recipe, config.train.lr, parent_result.lr_scale, config.model.norm);
  const auto sections = config.sections();
  for (const auto& assignment : remedy.overrides()) apply_override(sections, assignment);
  const std::string parent_dir = lifecycle.run_dir(), child_dir = lifecycle.remedy_child_dir();
  std::cerr << "\n" << parent_result.message << "\n"
            << fmt::format("keel: restarting from step 0 with the Spike No More remedy (model.embed_scale={} "
                           "model.init={}{}) and train.lr={:g} (was {:g}) as child run {}\n",
                           config.model.embed_scale, config.model.init,
                           remedy.norm.empty() ? std::string() : " model.norm=" + remedy.norm, config.train.lr,
                           remedy.parent_lr, child_dir);
  options.run_dir = child_dir;
  options.resume = false;
  options.parent_run = parent_dir;
  lifecycle.continue_as_remedy_child(config.run.recipe);
  return train_once(a, config, options);
}

// Prints the abort and the command that continues from the last good checkpoint the message names.
int print_aborted(const TrainResult& result, const std::string& run_dir) {
  std::cerr << "\nkeel: ABORTED by the stability monitor (exit code " << kExitStabilityAbort << ")\n"
            << result.message << "\nrun directory: " << run_dir << "\n";
  std::smatch good, lr;
  const std::string& message = result.message;
  if (std::regex_search(message, good, std::regex("Last good checkpoint: step ([0-9]+)")) && good[1] != "0") {
    std::cerr << "continue from it: " << process::self_dir() << "/keel train --resume-from " << good[1].str()
              << " --run-dir " << run_dir;
    if (std::regex_search(message, lr, std::regex("Suggested: train.lr=([0-9.eE+-]+)")))
      std::cerr << " --set train.lr=" << lr[1].str();
    std::cerr << "\n";
  }
  return kExitStabilityAbort;
}

int print_preempted(const TrainResult& result, const std::string& run_dir) {
  std::cerr << "\nkeel: PREEMPTED (exit code " << kExitPreempted << ") after step " << result.final_step
            << "; the checkpoint is saved. Requeue with: " << resume_command(run_dir) << "\n";
  return kExitPreempted;
}

int print_interrupted(const TrainResult& result, const std::string& run_dir) {
  std::cerr << "\nkeel: INTERRUPTED (exit code " << kExitInterrupted << ") after step " << result.final_step
            << "; the checkpoint is saved.\nresume with:   " << resume_command(run_dir) << "\n";
  return kExitInterrupted;
}

// A distributed job that failed and was not (or no longer) restarted.
int print_failed(const TrainResult& result, const std::string& run_dir) {
  std::cerr << "\nkeel: the job FAILED (exit code " << result.exit_code << "); resume it with: "
            << process::self_dir() << "/keel train --resume --run-dir " << run_dir << "\n";
  return result.exit_code;
}

// The summary of a run that ended normally (completed, or stopped at train.stop_at).
int print_summary(const TrainResult& result, const launch::RunEnd& end, const std::string& run_dir) {
  std::cout << "\n";
  if (!std::isnan(result.final_val_loss))
    std::cout << fmt::format("final val loss {:.4f} (perplexity {:.2f}) after {} steps in {}\n",
                             result.final_val_loss, std::exp(result.final_val_loss), result.final_step,
                             format_duration(end.wall_seconds));
  else
    std::cout << fmt::format("stopped after {} steps in {}\n", result.final_step, format_duration(end.wall_seconds));
  if (std::isfinite(end.tokens_per_second))
    std::cout << fmt::format("throughput {:.0f} tokens/s", end.tokens_per_second);
  else  // metrics/throughput.h: the first steps after a start, resume or rollback are not timed
    std::cout << fmt::format("throughput not measured (the first {} steps after a start or resume are warm-up)",
                             throughput::kWarmupSteps);
  if (result.peak_device_memory_bytes > 0)
    std::cout << fmt::format(", peak GPU memory {:.2f} GiB", result.peak_device_memory_bytes / 1073741824.0);
  std::cout << "\n";

  std::cout << "run directory: " << run_dir << "\n";
  if (!end.finished)  // stopped at train.stop_at
    std::cout << "continue with: " << resume_command(run_dir) << "\n";
  else
    std::cout << "train longer:  " << resume_command(run_dir) << " --set train.steps=" << 2 * result.final_step << "\n";
  return result.exit_code;
}

int print_outcome(const TrainResult& result, const launch::RunEnd& end, const std::string& run_dir) {
  if (result.exit_code == kExitStabilityAbort) return print_aborted(result, run_dir);
  if (result.exit_code == kExitPreempted) return print_preempted(result, run_dir);
  if (result.exit_code == kExitInterrupted) return print_interrupted(result, run_dir);
  if (result.exit_code != kExitOk) return print_failed(result, run_dir);
  return print_summary(result, end, run_dir);
}

int train(TrainArgs& a) {
  RunConfig config = load_train_config(a);
  const std::string run_dir = choose_run_dir(a, config);
  fs::make_dirs(run_dir);
  spdlog::default_logger()->sinks().push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(run_dir + "/train.log"));

  if (a.resume && a.resume_from < 0) {
    // Nothing to train: say so, and keep the run's record (a resume would overwrite its figures).
    if (const auto done = launch::completed_step(run_dir); done && *done >= config.train.steps) {
      std::cout << "run " << run_dir << " is already complete at step " << *done << " (train.steps = "
                << config.train.steps << ")\ntrain longer:  " << resume_command(run_dir)
                << " --set train.steps=" << 2 * *done << "\n";
      return kExitOk;
    }
  }
  TrainOptions options;
  options.run_dir = run_dir;
  options.resume = a.resume;
  options.resume_from_step = a.resume_from;
  options.interactive = stderr_is_terminal();
  launch::RunLifecycle lifecycle(config, run_dir);
  if (a.nproc > 0) parallel::check_layout(config.parallel.dp, config.parallel.tp, a.nproc);
  const JobToken token(a.no_token, config, run_dir);  // before any child process or client
  const PublishForInterrupt publish(lifecycle);
  TrainResult result;
  try {
    result = train_once(a, config, options);
    if (result.remedy_restart_requested) result = restart_with_remedy(a, config, options, lifecycle, result);
  } catch (const std::exception& e) {
    if (interrupted_by_user()) {
      // Ctrl-C reached a child (a data preparation shares the terminal) and the run threw for it.
      lifecycle.interrupt_now(std::string("interrupted: ") + e.what());
      std::cerr << "\nkeel: INTERRUPTED (exit code " << kExitInterrupted << "): " << e.what() << "\n";
      return kExitInterrupted;
    }
    lifecycle.fail(e.what(), dynamic_cast<const ConfigError*>(&e) ? kExitConfigError : kExitError);
    throw;  // run_guarded tells the user and picks the same exit code
  }
  if (result.exit_code == kExitPreempted && interrupted_by_user()) {
    result.exit_code = kExitInterrupted;
    result.message = "interrupted by Ctrl-C after step " + std::to_string(result.final_step) + "; checkpoint saved";
  }
  const launch::RunEnd end = lifecycle.finish(result);
  return print_outcome(result, end, lifecycle.run_dir());
}

}  // namespace

int train_command(const std::vector<std::string>& args) {
  CLI::App app("Train a GPT model with the stability monitor on", "keel train");
  TrainArgs a;
  add_train_options(app, a);
  if (int code = parse_args(app, args); code >= 0) return code;
  // SIGTERM (a scheduler preempting us): in this process the training loop saves after its step
  // and ends with kExitPreempted; with --nproc the launcher forwards it to the workers.
  preemption::install_handler();
  preemption::install_interrupt_handler(on_interrupt);  // Ctrl-C: save and stop; twice: stop now
  return run_guarded("train", [&]() -> int { return train(a); });
}

}  // namespace keel::cli
