// Which GPU a worker takes (device/gpu_binding.h), as a function of its node-local rank and the
// GPUs it sees: every rank of a one-GPU-per-task binding (srun --gpus-per-task=1) takes the one it
// sees, whatever its SLURM_LOCALID; with the node's GPUs all visible, rank r takes GPU r; more
// workers than GPUs, or none visible, is a clear error.
#include <gtest/gtest.h>

#include <string>

#include "common/check.h"
#include "device/gpu_binding.h"

namespace keel {
namespace {

TEST(GpuBinding, OneVisibleGpuIsEveryRanksWhateverItsLocalRank) {
  for (int local_rank : {0, 1, 3, 7}) EXPECT_EQ(gpu_for_local_rank(local_rank, 1), 0) << local_rank;
}

TEST(GpuBinding, WithEveryGpuVisibleRankRTakesGpuR) {
  for (int local_rank = 0; local_rank < 8; ++local_rank) EXPECT_EQ(gpu_for_local_rank(local_rank, 8), local_rank);
  EXPECT_EQ(gpu_for_local_rank(1, 2), 1);
}

TEST(GpuBinding, MoreWorkersThanGpusOrNoneVisibleIsAClearError) {
  try {
    gpu_for_local_rank(2, 2);
    FAIL() << "rank 2 of a node with 2 GPUs must be refused";
  } catch (const KeelError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("node-local rank 2 has no GPU of its own (2 visible)"), std::string::npos) << message;
    EXPECT_NE(message.find("--gpus-per-task=1"), std::string::npos) << message;
  }
  EXPECT_THROW(gpu_for_local_rank(0, 0), KeelError);
  EXPECT_THROW(gpu_for_local_rank(-1, 4), KeelError);
}

}  // namespace
}  // namespace keel
