// launch_probe: a stand-in for keel-worker that exercises everything the launch scripts
// (deploy/slurm/keel.sbatch, deploy/mpirun/run.sh) are responsible for, without Torch or a model:
//   launch_probe CONFIG --coordinator HOST:PORT --run-dir DIR [--job-id ID] [--set section.key=value ...]
// Every rank: MPI_Init (through PMIx under srun, through mpirun's runtime otherwise), checks that the
// launcher's rank variables (OMPI_COMM_WORLD_* or SLURM_*) agree with MPI's rank and size, registers
// with the real coordinator (which must hand out the same world size and the dp x tp layout asked for
// with --set parallel.dp/tp), heartbeats, runs `train.steps` (default 20) "steps" whose loss is an
// MPI_Allreduce of per-rank values, reports each step's metrics to the coordinator, and shuts down
// cleanly (so the coordinator completes the job and exits 0). Rank 0 writes DIR/metrics.jsonl like
// keel-worker ({"step": s, "loss": l, "grad_norm": g}). Exit code 0 on success, 1 with a message.
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>

#include "rpc/coordinator_client.h"

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

[[noreturn]] void fail(int rank, const std::string& message) {
  std::cerr << "launch_probe[rank " << rank << "]: error: " << message << std::endl;
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  std::string config, address, run_dir, job_id = "default";
  int steps = 20, dp = 0, tp = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) fail(rank, "missing value after " + a);
      return argv[++i];
    };
    if (a == "--coordinator") {
      address = next();
    } else if (a == "--run-dir") {
      run_dir = next();
    } else if (a == "--set") {
      const std::string kv = next();
      const auto eq = kv.find('=');
      if (eq == std::string::npos) fail(rank, "--set needs section.key=value, got " + kv);
      const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
      if (key == "train.steps") steps = std::stoi(value);
      if (key == "parallel.dp") dp = std::stoi(value);
      if (key == "parallel.tp") tp = std::stoi(value);
    } else if (a == "--job-id") {
      job_id = next();
    } else if (a == "--heartbeat-interval") {
      next();
    } else if (a == "--resume") {
    } else if (config.empty() && a.rfind("--", 0) != 0) {
      config = a;
    } else {
      fail(rank, "unknown argument " + a);
    }
  }
  if (config.empty() || address.empty() || run_dir.empty())
    fail(rank, "usage: launch_probe CONFIG --coordinator HOST:PORT --run-dir DIR [--set k=v ...]");
  if (!std::ifstream(config)) fail(rank, "config " + config + " cannot be read");

  // The launcher's own view must agree with MPI's.
  std::string source = "none";
  int env_rank = -1, env_size = -1, local_rank = 0;
  if (std::getenv("OMPI_COMM_WORLD_RANK")) {
    source = "openmpi";
    env_rank = env_int("OMPI_COMM_WORLD_RANK", -1);
    env_size = env_int("OMPI_COMM_WORLD_SIZE", -1);
    local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
  }
  if (std::getenv("SLURM_PROCID") && std::getenv("SLURM_STEP_ID")) {
    // Under srun both may be set (Open MPI fills OMPI_* from PMIx too); Slurm's must agree as well.
    if (env_rank >= 0 && env_rank != env_int("SLURM_PROCID", -1))
      fail(rank, "OMPI_COMM_WORLD_RANK and SLURM_PROCID disagree");
    source = source == "none" ? "slurm" : source + "+slurm";
    env_rank = env_int("SLURM_PROCID", -1);
    env_size = env_int("SLURM_NTASKS", env_int("SLURM_NPROCS", -1));
    local_rank = env_int("SLURM_LOCALID", 0);
  }
  if (env_rank != rank || env_size != size) {
    std::ostringstream m;
    m << "launcher environment (" << source << ") says rank " << env_rank << " of " << env_size << ", MPI says "
      << rank << " of " << size;
    fail(rank, m.str());
  }

  int exit_code = 0;
  try {
    keel::coord::ClientOptions client_options;
    client_options.job_id = job_id;
    // The token the launcher hands every rank (keel.sbatch makes one per job), as keel-worker reads it.
    keel::coord::CoordinatorClient client(address, keel::coord::resolve_coordinator_token(""), client_options);
    keel::coord::RegisterOptions ro;
    ro.local_rank = local_rank;
    ro.requested_world_size = size;
    ro.requested_rank = rank;
    ro.timeout_seconds = 120;
    const auto reg = client.register_worker(ro);
    if (reg.rank != rank || reg.world_size != size) fail(rank, "coordinator assigned a different rank/world");
    if (reg.tp_size != tp || (dp != 0 && reg.dp_size != dp) || reg.dp_size * reg.tp_size != size) {
      std::ostringstream m;
      m << "coordinator layout dp=" << reg.dp_size << " tp=" << reg.tp_size << ", asked dp=" << dp << " tp=" << tp;
      fail(rank, m.str());
    }
    client.start_heartbeats(std::chrono::milliseconds(200));
    std::ofstream metrics;
    if (rank == 0) {
      metrics.open(run_dir + "/metrics.jsonl", std::ios::trunc);
      if (!metrics) fail(rank, "cannot write " + run_dir + "/metrics.jsonl");
    }
    for (int step = 1; step <= steps; ++step) {
      double local[2] = {std::log(10.0 + rank) / step, std::sqrt(1.0 + rank * step)};
      double global[2] = {0, 0};
      MPI_Allreduce(local, global, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      const double loss = global[0] / size, grad_norm = global[1];
      client.report_metrics_async(step, {{"loss", loss}, {"grad_norm", grad_norm}});
      if (rank == 0)
        metrics << std::setprecision(10) << "{\"step\": " << step << ", \"loss\": " << loss
                << ", \"grad_norm\": " << grad_norm << "}\n";
      if (client.job_failed()) fail(rank, "the coordinator says the job failed: " + client.failure_message());
    }
    if (rank == 0) metrics.close();
    MPI_Barrier(MPI_COMM_WORLD);
    client.shutdown("done", 0);
    std::cout << "launch_probe: rank " << rank << "/" << size << " (" << source << ", local " << local_rank
              << ", dp " << reg.dp_size << " x tp " << reg.tp_size << ") ran " << steps << " steps" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "launch_probe[rank " << rank << "]: error: " << e.what() << std::endl;
    exit_code = 1;
  }
  MPI_Finalize();
  return exit_code;
}
