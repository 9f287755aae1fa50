// GPU choice of a worker (see gpu_binding.h).
#include "device/gpu_binding.h"

#include "common/check.h"

namespace keel {

int gpu_for_local_rank(int local_rank, int visible_gpus) {
  KEEL_CHECK(local_rank >= 0, "node-local rank must be >= 0, got " << local_rank);
  KEEL_CHECK(visible_gpus > 0, "node-local rank " << local_rank << " sees no GPU (train.device asks for one)");
  if (visible_gpus == 1) return 0;  // one GPU bound to this task: it is the one this rank sees
  KEEL_CHECK(local_rank < visible_gpus,
             "node-local rank " << local_rank << " has no GPU of its own (" << visible_gpus
                                << " visible): start at most one worker per GPU on a node, or bind one GPU per "
                                   "task (srun --gpus-per-task=1)");
  return local_rank;
}

}  // namespace keel
