// One keel-worker rank from its environment to its exit code (see worker_bootstrap.h).
#include "launch/worker_bootstrap.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "common/check.h"
#include "common/exit_codes.h"
#include "common/fs.h"
#include "common/preemption.h"
#include "device/device_memory.h"
#include "device/gpu_binding.h"
#include "launch/run_lifecycle.h"
#include "parallel/communicator_factory.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "parallel/rank_env.h"
#include "rpc/coordinator_client.h"
#include "worker/trainer.h"

namespace keel::launch {
namespace {

// Leaves the job when the coordinator says it failed. Exits the process: the main thread may be
// blocked inside a collective that will never complete.
class FailureWatchdog {
 public:
  FailureWatchdog(coord::CoordinatorClient& client, parallel::Communicator& world, bool debug)
      : client_(client), world_(world), debug_(debug) {
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
        // Another rank's error: plain for users, with its source file:line only under --debug.
        const std::string why = client_.failure_message();
        spdlog::error("the job failed, leaving it: {}", debug_ ? why : without_source_locations(why));
        if (world_.backend() == "nccl") world_.abort();  // unblocks a stuck NCCL collective
        std::_Exit(kExitJobFailed);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  coord::CoordinatorClient& client_;
  parallel::Communicator& world_;
  bool debug_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The run directory every rank shares, and this rank's log file in it (rank 0: train.log).
std::string open_run_dir(const RunConfig& config, std::string run_dir, int rank) {
  spdlog::set_pattern(fmt::format("[%H:%M:%S] [rank {}] [%l] %v", rank));
  if (run_dir.empty()) run_dir = config.run.runs_root + "/" + (config.run.name.empty() ? config.run.recipe : config.run.name);
  fs::make_dirs(run_dir);
  const std::string log_file = run_dir + (rank == 0 ? "/train.log" : "/train.rank" + std::to_string(rank) + ".log");
  spdlog::default_logger()->sinks().push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file));
  return run_dir;
}

std::unique_ptr<coord::CoordinatorClient> connect(const RunConfig& config, const WorkerOptions& options) {
  coord::ClientOptions client_options;
  client_options.job_id = options.job_id;
  client_options.tls_ca_file = config.coordinator.tls_ca;
  client_options.coordinator_loss_timeout_seconds = config.coordinator.loss_timeout_seconds;
  return std::make_unique<coord::CoordinatorClient>(
      options.coordinator_address, coord::resolve_coordinator_token(config.coordinator.token_file), client_options);
}

// Registers this rank (rank 0 proposes the NCCL id of the world) and checks that the coordinator
// serves the config's layout.
coord::Registration register_rank(coord::CoordinatorClient& client, const RunConfig& config,
                                  const parallel::RankEnv& env, const std::string& backend,
                                  const std::string& device) {
  coord::RegisterOptions registration_options;
  registration_options.local_rank = env.local_rank;
  registration_options.device = device;
  registration_options.requested_world_size = env.world_size;
  registration_options.requested_rank = env.rank;
  if (backend == "nccl" && env.rank == 0) registration_options.nccl_id_proposals["world"] = parallel::new_nccl_unique_id();
  const coord::Registration registration = client.register_worker(registration_options);
  KEEL_CHECK(registration.dp_size == config.parallel.dp && registration.tp_size == config.parallel.tp,
             "the coordinator runs dp=" << registration.dp_size << " x tp=" << registration.tp_size
                                        << " but the config says parallel.dp=" << config.parallel.dp
                                        << " x parallel.tp=" << config.parallel.tp);
  return registration;
}

std::unique_ptr<parallel::Communicator> make_world(const coord::Registration& registration,
                                                   const std::string& backend, int cuda_device) {
  parallel::WorldSpec spec;
  spec.backend = backend;
  spec.rank = registration.rank;
  spec.size = registration.world_size;
  spec.cuda_device = cuda_device;
  if (backend == "nccl") spec.nccl_unique_id = registration.group("world").nccl_unique_id;
  return parallel::make_world_communicator(spec);
}

// Trains under the failure watchdog; a training error is reported to the coordinator first.
TrainResult train_watched(const RunConfig& config, const TrainOptions& options, coord::CoordinatorClient& client,
                          parallel::Communicator& world, int rank, bool debug) {
  FailureWatchdog watchdog(client, world, debug);
  try {
    return train_run(config, options);
  } catch (const std::exception& e) {
    client.shutdown(std::string("rank ") + std::to_string(rank) + " failed: " + e.what(), kExitError);
    throw;
  }
}

// Reports the end of this rank (rank 0: worker_result.json) and leaves the job.
int leave_job(const TrainResult& result, const std::string& run_dir, int rank, coord::CoordinatorClient& client,
              parallel::Communicator& world) {
  const int exit_code = result.remedy_restart_requested ? int{kExitRemedyRestart} : result.exit_code;
  if (result.preempted && rank == 0) spdlog::warn("{}", result.message);
  if (rank == 0) write_worker_result(run_dir, result, exit_code);
  // A stability abort or remedy request is an orderly end of this job, not a crash of the rank.
  client.shutdown(result.message.empty() ? "finished" : result.message, kExitOk);
  // Preempted: leave together, so mpirun (which ends the job when one rank exits non-zero) never
  // cuts a rank short before it reported its shutdown.
  if (result.preempted && world.size() > 1) world.barrier();
  return exit_code;
}

}  // namespace

int run_worker(const WorkerOptions& options, int* argc, char*** argv) {
  RunConfig config = RunConfig::load(options.config_path, options.overrides);
  const parallel::RankEnv env = parallel::read_rank_env();
  parallel::check_layout(config.parallel.dp, config.parallel.tp, env.world_size);
  const std::string run_dir = open_run_dir(config, options.run_dir, env.rank);

  const bool on_cuda = trains_on_cuda(config.train.device);
  const std::string backend = parallel::resolve_backend(config.parallel.backend, env.world_size, on_cuda);
  std::unique_ptr<parallel::MpiEnvironment> mpi;
  if (backend == "mpi") mpi = std::make_unique<parallel::MpiEnvironment>(argc, argv);
  preemption::install_handler();  // after MPI_Init, whose runtime may install handlers of its own

  auto client = connect(config, options);
  // The GPU of this rank: its node-local rank's, or the only one it sees (gpu_binding.h).
  const int gpu = on_cuda ? gpu_for_local_rank(env.local_rank, cuda_device_count()) : -1;
  const std::string device = on_cuda ? "cuda:" + std::to_string(gpu) : "cpu";
  const coord::Registration registration = register_rank(*client, config, env, backend, device);
  client->start_heartbeats(std::chrono::milliseconds(static_cast<int64_t>(options.heartbeat_seconds * 1000)));
  auto world = make_world(registration, backend, on_cuda ? gpu : env.local_rank);
  parallel::ProcessGroups groups(*world, config.parallel);
  spdlog::info("rank {} of {} (dp rank {}, tp rank {}), {} backend, device {}", registration.rank,
               registration.world_size, groups.dp_rank(), groups.tp_rank(), backend, device);

  TrainOptions train_options;
  train_options.run_dir = run_dir;
  train_options.resume = options.resume || options.resume_from_step >= 0;
  train_options.resume_from_step = options.resume_from_step;
  train_options.groups = &groups;
  train_options.coordinator = client.get();
  train_options.device_index = on_cuda ? gpu : env.local_rank;
  const TrainResult result = train_watched(config, train_options, *client, *world, registration.rank, options.debug);
  return leave_job(result, run_dir, registration.rank, *client, *world);
}

}  // namespace keel::launch
