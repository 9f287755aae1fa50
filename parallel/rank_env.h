// RankEnv: this process's rank, world size and node-local rank as the launcher reported them in
// the environment. Launchers are tried in order: Open MPI (OMPI_COMM_WORLD_RANK/_SIZE/_LOCAL_RANK),
// Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID), torchrun (RANK, WORLD_SIZE, LOCAL_RANK); the
// first whose rank variable is set wins. With none set, a world of one. Used to pick the GPU
// (local_rank) and to size the world before any communicator exists. Torch-free.
#pragma once

#include <functional>
#include <string>

namespace keel::parallel {

struct RankEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string source = "default";  // "openmpi" | "slurm" | "torchrun" | "default"
};

// Reads the process environment. Throws KeelError when the chosen launcher's values are missing,
// not integers, or inconsistent (rank >= world size, negative values, ...).
RankEnv read_rank_env();

// Same, with `lookup(name)` in place of getenv (nullptr when unset); for tests.
RankEnv parse_rank_env(const std::function<const char*(const char*)>& lookup);

}  // namespace keel::parallel
