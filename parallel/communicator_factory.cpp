// World communicator construction (see communicator_factory.h).
#include "parallel/communicator_factory.h"

#include "common/check.h"
#include "parallel/mpi_communicator.h"
#ifdef KEEL_WITH_NCCL
#include "parallel/nccl_communicator.h"
#endif

namespace keel::parallel {

bool nccl_available() {
#ifdef KEEL_WITH_NCCL
  return true;
#else
  return false;
#endif
}

std::string resolve_backend(const std::string& backend, int world_size, bool on_cuda) {
  if (backend != "auto") return backend;
  if (world_size == 1) return "single";
  return on_cuda ? "nccl" : "mpi";
}

std::string new_nccl_unique_id() {
#ifdef KEEL_WITH_NCCL
  return NcclCommunicator::unique_id();
#else
  throw KeelError("parallel.backend=nccl: this build has no NCCL (configure on a machine with CUDA and NCCL)");
#endif
}

std::unique_ptr<Communicator> make_world_communicator(const WorldSpec& spec) {
  if (spec.backend == "single") {
    KEEL_CHECK(spec.size == 1, "parallel.backend=single cannot serve a world of " << spec.size << " ranks");
    return std::make_unique<SingleProcessCommunicator>();
  }
  if (spec.backend == "mpi") {
    KEEL_CHECK(MpiEnvironment::initialized(), "parallel.backend=mpi: MPI is not initialized");
    auto world = MpiCommunicator::world();
    KEEL_CHECK(world->size() == spec.size && world->rank() == spec.rank,
               "MPI sees rank " << world->rank() << " of " << world->size() << " but the coordinator assigned rank "
                                << spec.rank << " of " << spec.size
                                << " (start the workers with mpirun/srun --mpi=pmix, one per rank)");
    return world;
  }
  if (spec.backend == "nccl") {
#ifdef KEEL_WITH_NCCL
    KEEL_CHECK(spec.nccl_unique_id.size() == 128, "NCCL unique id has " << spec.nccl_unique_id.size()
                                                                      << " bytes, expected 128");
    return std::make_unique<NcclCommunicator>(spec.rank, spec.size, spec.nccl_unique_id, spec.cuda_device);
#else
    new_nccl_unique_id();  // throws the "no NCCL in this build" error
#endif
  }
  throw KeelError("unknown parallel.backend '" + spec.backend + "'");
}

}  // namespace keel::parallel
