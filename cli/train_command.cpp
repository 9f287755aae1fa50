// `keel train CONFIG [--set section.key=value ...] [--run-dir DIR] [--resume] [--nproc N] [--max-restarts K]`
//
// Picks the run directory and trains: in this process beside a keel-coordinator process (which
// serves /metrics), or with --nproc N as a local distributed job of N keel-worker processes
// (launch/local_job.h). On the monitor's remedy escalation it restarts from step 0 with the "Spike No
// More" remedy recipe as a child run linked to its parent (run_info.json).
#include <spdlog/spdlog.h>
#include <spdlog/sinks/basic_file_sink.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <regex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "launch/local_job.h"
#include "rpc/coordinator_client.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/preemption.h"
#include "common/process.h"
#include "parallel/process_groups.h"
#include "registry/run_registry.h"
#include "worker/progress.h"
#include "worker/trainer.h"

namespace keel::cli {
namespace {

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

void write_run_info(const std::string& run_dir, const nlohmann::json& info) {
  fs::write_file_atomic(run_dir + "/run_info.json", info.dump(2) + "\n");
}

// Records the finished run (config, events, downsampled metrics) in the SQLite run registry under
// the runs root. Done after training, never on the step path; a registry problem is a warning.
void record_in_registry(const std::string& runs_root, const std::string& run_dir) {
  try {
    fs::make_dirs(runs_root);
    registry::RunRegistry(runs_root + "/registry.sqlite").import_run_dir(run_dir);
  } catch (const std::exception& e) {
    spdlog::warn("run registry: could not record {}: {}", run_dir, e.what());
  }
}

// One run in this process, reporting to a coordinator process of its own (a world of one).
TrainResult train_in_process(const RunConfig& config, TrainOptions options) {
  auto coordinator_options = launch::CoordinatorProcess::Options::from(config, options.run_dir);
  coordinator_options.heartbeat_timeout_seconds = 30;  // one process: a long step must not look like a hang
  launch::CoordinatorProcess coordinator(coordinator_options);
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
    client.shutdown(result.message.empty() ? "finished" : result.message, 0);
    coordinator.finish(coordinator_options.metrics_linger_seconds + 5.0);
    return result;
  } catch (const std::exception& e) {
    client.shutdown(std::string("failed: ") + e.what(), kExitError);
    throw;
  }
}

}  // namespace

int train_command(const std::vector<std::string>& args) {
  CLI::App app("Train a GPT model with the stability monitor on", "keel train");
  std::string config_path, run_dir;
  std::vector<std::string> overrides;
  bool resume = false;
  int64_t resume_from = -1;
  int nproc = 0, max_restarts = 0;
  app.add_option("config", config_path, "recipe config (configs/*.yaml)");
  app.add_option("--nproc", nproc,
                 "run as a distributed job of N local keel-worker processes (parallel.dp x parallel.tp = N)");
  app.add_option("--max-restarts", max_restarts,
                 "with --nproc: restart a failed job from its last committed checkpoint up to K times")
      ->capture_default_str();
  app.add_option("--set", overrides, "override a config key: section.key=value (repeatable)")->take_all();
  app.add_option("--run-dir", run_dir, "run directory (default: RUNS_ROOT/RECIPE-TIMESTAMP)");
  app.add_flag("--resume", resume, "continue from the newest complete checkpoint of the run directory");
  app.add_option("--resume-from", resume_from,
                 "continue from this checkpoint step of --run-dir (e.g. the last good one an abort names); "
                 "newer checkpoints are moved to checkpoints-set-aside/");
  if (int code = parse_args(app, args); code >= 0) return code;

  // SIGTERM (a scheduler preempting us): in this process the training loop saves after its step
  // and ends with exit code 6; with --nproc the launcher forwards it to the workers.
  preemption::install_handler();
  return run_guarded("train", [&]() -> int {
    if (resume_from >= 0) {
      KEEL_CHECK(!run_dir.empty(), "--resume-from needs --run-dir (the run to continue)");
      resume = true;
    }
    // On --resume without a config, the run's own resolved config is used; its stop_at is cleared
    // unless given again, so a run stopped early resumes to the end.
    if (config_path.empty()) {
      KEEL_CHECK(resume && !run_dir.empty(), "a config file is needed (or --resume --run-dir DIR)");
      config_path = run_dir + "/config.yaml";
      overrides.insert(overrides.begin(), "train.stop_at=-1");
    }
    RunConfig config = RunConfig::load(config_path, overrides);
    if (run_dir.empty()) {
      if (resume) run_dir = newest_run_of(config.run.runs_root, config.run.recipe);
      if (run_dir.empty()) {
        run_dir = config.run.runs_root + "/" +
                  (config.run.name.empty() ? config.run.recipe + "-" + timestamp() : config.run.name);
      }
    }
    fs::make_dirs(run_dir);
    auto file_sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(run_dir + "/train.log");
    spdlog::default_logger()->sinks().push_back(file_sink);

    TrainOptions options;
    options.run_dir = run_dir;
    options.resume = resume;
    options.resume_from_step = resume_from;
    options.interactive = stderr_is_terminal();
    nlohmann::json info = {{"run_dir", run_dir}, {"recipe", config.run.recipe}, {"parent", nullptr},
                           {"status", "running"}, {"started_unix", std::time(nullptr)}};
    if (!config.train.init_from.empty()) {
      // keel uptrain: the parent is the run that wrote the starting checkpoint (RUN/checkpoints/step_N).
      info["parent"] = std::filesystem::path(config.train.init_from).parent_path().parent_path().string();
      info["init_from"] = config.train.init_from;
    }
    write_run_info(run_dir, info);
    const auto start = std::chrono::steady_clock::now();
    launch::LaunchOptions launch_options;
    launch_options.nproc = nproc;
    launch_options.max_restarts = max_restarts;
    launch_options.resume_from_step = resume_from;
    auto train = [&](const RunConfig& run_config, const TrainOptions& run_options) {
      if (nproc == 0) return train_in_process(run_config, run_options);
      launch_options.run_dir = run_options.run_dir;
      launch_options.resume = run_options.resume;
      return launch::launch_local_job(run_config, launch_options);
    };
    if (nproc > 0) parallel::check_layout(config.parallel.dp, config.parallel.tp, nproc);
    TrainResult result = train(config, options);

    if (result.remedy_restart_requested) {
      // Escalation: restart from step 0 with scaled embeddings + small init and the lower LR the
      // monitor diagnosed, as a child run.
      info["status"] = "remedy_restart";
      info["message"] = result.message;
      write_run_info(run_dir, info);
      record_in_registry(config.run.runs_root, run_dir);
      const std::string child_dir = run_dir + "-remedy";
      const double old_lr = config.train.lr;
      config.model.embed_scale = "sqrt_d";
      config.model.init = "small";
      config.train.lr = old_lr * result.lr_scale;
      config.stability.on_repeated_spikes = "abort";
      config.run.recipe += "+remedy";
      std::cerr << "\n" << result.message << "\n"
                << fmt::format("keel: restarting from step 0 with the Spike No More remedy (model.embed_scale=sqrt_d "
                               "model.init=small) and train.lr={:g} (was {:g}) as child run {}\n",
                               config.train.lr, old_lr, child_dir);
      options.run_dir = child_dir;
      options.resume = false;
      options.parent_run = run_dir;
      fs::make_dirs(child_dir);
      write_run_info(child_dir, {{"run_dir", child_dir}, {"recipe", config.run.recipe}, {"parent", run_dir},
                                 {"status", "running"}, {"started_unix", std::time(nullptr)}});
      run_dir = child_dir;
      info = nlohmann::json::parse(fs::read_file(child_dir + "/run_info.json"));
      result = train(config, options);
    }

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    info["ended_unix"] = std::time(nullptr);
    info["exit_code"] = result.exit_code;
    info["final_step"] = result.final_step;
    info["wall_seconds"] = seconds;
    if (!std::isnan(result.final_val_loss)) info["final_val_loss"] = result.final_val_loss;
    info["tokens_per_second"] = result.mean_tokens_per_second;
    info["peak_device_memory_bytes"] = result.peak_device_memory_bytes;
    const bool finished = result.final_step >= config.train.steps;
    if (result.exit_code == kExitStabilityAbort) {
      info["status"] = "aborted";
      info["message"] = result.message;
      write_run_info(run_dir, info);
      record_in_registry(config.run.runs_root, run_dir);
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
    if (result.exit_code == kExitPreempted) {
      info["status"] = "preempted";
      info["message"] = result.message;
      write_run_info(run_dir, info);
      record_in_registry(config.run.runs_root, run_dir);
      std::cerr << "\nkeel: PREEMPTED (exit code " << kExitPreempted << ") after step " << result.final_step
                << "; the checkpoint is saved. Requeue with: " << process::self_dir() << "/keel train --resume --run-dir "
                << run_dir << "\n";
      return kExitPreempted;
    }
    if (result.exit_code != kExitOk) {
      // A distributed job that failed and was not (or no longer) restarted.
      info["status"] = "failed";
      info["message"] = "job failed with exit code " + std::to_string(result.exit_code);
      write_run_info(run_dir, info);
      record_in_registry(config.run.runs_root, run_dir);
      std::cerr << "\nkeel: the job FAILED (exit code " << result.exit_code << "); resume it with: "
                << process::self_dir() << "/keel train --resume --run-dir " << run_dir << "\n";
      return result.exit_code;
    }
    info["status"] = finished ? "completed" : "stopped";
    write_run_info(run_dir, info);
    record_in_registry(config.run.runs_root, run_dir);
    std::cout << "\n";
    if (!std::isnan(result.final_val_loss))
      std::cout << fmt::format("final val loss {:.4f} (perplexity {:.2f}) after {} steps in {}\n",
                               result.final_val_loss, std::exp(result.final_val_loss), result.final_step,
                               format_duration(seconds));
    else
      std::cout << fmt::format("stopped after {} steps in {}\n", result.final_step, format_duration(seconds));
    std::cout << fmt::format("throughput {:.0f} tokens/s", result.mean_tokens_per_second);
    if (result.peak_device_memory_bytes > 0)
      std::cout << fmt::format(", peak GPU memory {:.2f} GiB", result.peak_device_memory_bytes / 1073741824.0);
    std::cout << "\n";

    std::cout << "run directory: " << run_dir << "\n";
    if (!finished)
      std::cout << "resume with:   " << process::self_dir() << "/keel train --resume --run-dir " << run_dir << "\n";
    else
      std::cout << "train longer:  " << process::self_dir() << "/keel train --resume --run-dir " << run_dir
                << " --set train.steps=" << 2 * result.final_step << "\n";
    return result.exit_code;
  });
}

}  // namespace keel::cli
