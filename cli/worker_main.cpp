// `keel-worker CONFIG --coordinator HOST:PORT [--run-dir DIR] [--resume] [--set section.key=value ...]`
//
// One training process of a distributed job, started by mpirun, srun, or `keel train --nproc N`.
// It reads its rank from the launcher's environment (parallel/rank_env.h), registers with the
// coordinator (rank, DP x TP layout, NCCL ids), builds the world communicator and its DP/TP
// groups, and trains. A watchdog leaves the job promptly when the coordinator declares it failed
// (another rank died or hung): NCCL communicators are aborted and the process exits with code 4,
// since a rank blocked in a collective whose peer is gone would otherwise wait forever.
// SIGTERM or SIGUSR1 (preemption; mpirun forwards only SIGUSR1) ends the job after the current
// step with a checkpoint and exit code 6 (kExitPreempted), so a scheduler can requeue it.
// The coordinator token comes from coordinator.token_file or $KEEL_COORDINATOR_TOKEN and TLS from
// coordinator.tls_ca (worker/run_config.h); the token is never logged.
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "common/check.h"
#include "common/crash_handler.h"
#include "common/fs.h"
#include "common/preemption.h"
#include "rpc/coordinator_client.h"
#include "parallel/communicator_factory.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "parallel/rank_env.h"
#include "device/device_memory.h"
#include "worker/trainer.h"

namespace keel::cli {
namespace {

// Leaves the job when the coordinator says it failed. Exits the process: the main thread may be
// blocked inside a collective that will never complete.
class FailureWatchdog {
 public:
  FailureWatchdog(coord::CoordinatorClient& client, parallel::Communicator& world) : client_(client), world_(world) {
    thread_ = std::thread([this] { watch(); });
  }
  ~FailureWatchdog() {
    stop_ = true;
    thread_.join();
  }

 private:
  void watch() {
    while (!stop_) {
      if (client_.job_failed()) {
        spdlog::error("the job failed, leaving it: {}", client_.failure_message());
        if (world_.backend() == "nccl") world_.abort();  // unblocks a stuck NCCL collective
        std::_Exit(kExitJobFailed);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  coord::CoordinatorClient& client_;
  parallel::Communicator& world_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int worker_command(int argc, char** argv) {
  CLI::App app("One rank of a distributed Keel training job", "keel-worker");
  std::string config_path, run_dir, coordinator_address, job_id = "default";
  std::vector<std::string> overrides;
  bool resume = false;
  int64_t resume_from = -1;
  double heartbeat_seconds = 0.5;
  app.add_option("config", config_path, "recipe config (configs/*.yaml)")->required();
  app.add_option("--coordinator", coordinator_address, "the keel-coordinator's HOST:PORT")->required();
  app.add_option("--run-dir", run_dir, "run directory shared by all ranks (default: RUNS_ROOT/RECIPE)");
  app.add_option("--job-id", job_id, "job id the coordinator serves")->capture_default_str();
  app.add_option("--set", overrides, "override a config key: section.key=value (repeatable)")->take_all();
  app.add_flag("--resume", resume, "continue from the newest complete checkpoint of the run directory");
  app.add_option("--resume-from", resume_from, "resume from this checkpoint step (newer ones are set aside)");
  app.add_option("--heartbeat-interval", heartbeat_seconds, "seconds between heartbeats")->capture_default_str();
  if (int code = parse_args(app, std::vector<std::string>(argv + 1, argv + argc)); code >= 0) return code;

  return run_guarded("worker", [&]() -> int {
    RunConfig config = RunConfig::load(config_path, overrides);
    const parallel::RankEnv env = parallel::read_rank_env();
    parallel::check_layout(config.parallel.dp, config.parallel.tp, env.world_size);
    spdlog::set_pattern(fmt::format("[%H:%M:%S] [rank {}] [%l] %v", env.rank));
    if (run_dir.empty()) run_dir = config.run.runs_root + "/" + (config.run.name.empty() ? config.run.recipe : config.run.name);
    fs::make_dirs(run_dir);
    const std::string log_file = run_dir + (env.rank == 0 ? "/train.log" : "/train.rank" + std::to_string(env.rank) + ".log");
    spdlog::default_logger()->sinks().push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file));

    const bool on_cuda = trains_on_cuda(config.train.device);
    const std::string backend = parallel::resolve_backend(config.parallel.backend, env.world_size, on_cuda);
    std::unique_ptr<parallel::MpiEnvironment> mpi;
    if (backend == "mpi") mpi = std::make_unique<parallel::MpiEnvironment>(&argc, &argv);
    preemption::install_handler();  // after MPI_Init, whose runtime may install handlers of its own

    coord::ClientOptions client_options;
    client_options.job_id = job_id;
    client_options.tls_ca_file = config.coordinator.tls_ca;
    client_options.coordinator_loss_timeout_seconds = config.coordinator.loss_timeout_seconds;
    coord::CoordinatorClient client(coordinator_address,
                                    coord::resolve_coordinator_token(config.coordinator.token_file), client_options);
    coord::RegisterOptions registration_options;
    registration_options.local_rank = env.local_rank;
    registration_options.device = on_cuda ? "cuda:" + std::to_string(env.local_rank) : "cpu";
    registration_options.requested_world_size = env.world_size;
    registration_options.requested_rank = env.rank;
    if (backend == "nccl" && env.rank == 0) registration_options.nccl_id_proposals["world"] = parallel::new_nccl_unique_id();
    const coord::Registration registration = client.register_worker(registration_options);
    KEEL_CHECK(registration.dp_size == config.parallel.dp && registration.tp_size == config.parallel.tp,
               "the coordinator runs dp=" << registration.dp_size << " x tp=" << registration.tp_size
                                          << " but the config says parallel.dp=" << config.parallel.dp
                                          << " x parallel.tp=" << config.parallel.tp);
    client.start_heartbeats(std::chrono::milliseconds(static_cast<int64_t>(heartbeat_seconds * 1000)));

    parallel::WorldSpec spec;
    spec.backend = backend;
    spec.rank = registration.rank;
    spec.size = registration.world_size;
    spec.cuda_device = env.local_rank;
    if (backend == "nccl") spec.nccl_unique_id = registration.group("world").nccl_unique_id;
    auto world = parallel::make_world_communicator(spec);
    parallel::ProcessGroups groups(*world, config.parallel);
    spdlog::info("rank {} of {} (dp rank {}, tp rank {}), {} backend, device {}", registration.rank,
                 registration.world_size, groups.dp_rank(), groups.tp_rank(), backend, registration_options.device);

    TrainOptions options;
    options.run_dir = run_dir;
    options.resume = resume || resume_from >= 0;
    options.resume_from_step = resume_from;
    options.groups = &groups;
    options.coordinator = &client;
    options.device_index = env.local_rank;
    TrainResult result;
    {
      FailureWatchdog watchdog(client, *world);
      try {
        result = train_run(config, options);
      } catch (const std::exception& e) {
        client.shutdown(std::string("rank ") + std::to_string(registration.rank) + " failed: " + e.what(), kExitError);
        throw;
      }
    }
    const int exit_code = result.remedy_restart_requested ? int{kExitRemedyRestart} : result.exit_code;
    if (result.preempted && registration.rank == 0) spdlog::warn("{}", result.message);
    if (registration.rank == 0) {
      nlohmann::json summary = {{"exit_code", exit_code},
                                {"final_step", result.final_step},
                                {"mean_tokens_per_second", result.mean_tokens_per_second},
                                {"peak_device_memory_bytes", result.peak_device_memory_bytes},
                                {"message", result.message},
                                {"lr_scale", result.lr_scale}};
      if (!std::isnan(result.final_val_loss)) summary["final_val_loss"] = result.final_val_loss;
      fs::write_file_atomic(run_dir + "/worker_result.json", summary.dump(2) + "\n");
    }
    // A stability abort or remedy request is an orderly end of this job, not a crash of the rank.
    client.shutdown(result.message.empty() ? "finished" : result.message, 0);
    // Preempted: leave together, so mpirun (which ends the job when one rank exits non-zero) never
    // cuts a rank short before it reported its shutdown.
    if (result.preempted && world->size() > 1) world->barrier();
    return exit_code;
  });
}

}  // namespace
}  // namespace keel::cli

int main(int argc, char** argv) {
  spdlog::flush_on(spdlog::level::info);
  keel::install_crash_handler();
  return keel::cli::worker_command(argc, argv);
}
