// Picks and builds the world communicator of a worker: the one place that knows which backends this
// build has (NCCL only where the CUDA toolkit and NCCL were found). Torch-free.
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace keel::parallel {

// True when this build has the NCCL backend.
bool nccl_available();

// parallel.backend "auto" resolved: "single" for a world of one, "nccl" on CUDA, "mpi" otherwise.
std::string resolve_backend(const std::string& backend, int world_size, bool on_cuda);

// A fresh NCCL unique id (128 bytes) for rank 0 to share; throws KeelError without NCCL.
std::string new_nccl_unique_id();

struct WorldSpec {
  std::string backend;         // resolved: single | mpi | nccl
  int rank = 0;
  int size = 1;
  int cuda_device = 0;         // nccl: this rank's GPU
  std::string nccl_unique_id;  // nccl: the world's id (from the coordinator)
};

// mpi needs MPI initialized (MpiEnvironment) and checks that MPI's world matches rank and size.
std::unique_ptr<Communicator> make_world_communicator(const WorldSpec& spec);

}  // namespace keel::parallel
