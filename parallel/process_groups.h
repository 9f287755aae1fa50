// ProcessGroups: the data-parallel and tensor-parallel sub-communicators of a world.
//
// Layout: world rank = dp_rank * tp + tp_rank, so the tp ranks of one model replica are adjacent
// (on one node, where the fast links are). The `tp` group of a rank holds the tp ranks with its
// dp_rank; its `dp` group holds the dp ranks with its tp_rank (the replicas of the same shard,
// which average gradients). Construction is collective over the world (two splits: tp, then dp).
// Torch-free.
#pragma once

#include <cstdint>
#include <memory>

#include "parallel/communicator.h"
#include "parallel/parallel_config.h"

namespace keel::parallel {

// Where world rank `rank` sits in a dp x tp grid.
struct GridPosition {
  int dp_rank = 0;
  int tp_rank = 0;
};
GridPosition grid_position(int rank, int64_t tp);

// Throws ConfigError "parallel.dp (2) x parallel.tp (3) = 6 does not match the world size 4"
// unless dp * tp == world_size (and both are >= 1).
void check_layout(int64_t dp, int64_t tp, int world_size);

class ProcessGroups {
 public:
  // `world` is borrowed and must outlive this object.
  ProcessGroups(Communicator& world, int64_t dp, int64_t tp);
  ProcessGroups(Communicator& world, const ParallelConfig& config) : ProcessGroups(world, config.dp, config.tp) {}

  Communicator& world() { return world_; }
  Communicator& dp() { return *dp_; }
  Communicator& tp() { return *tp_; }

  int dp_size() const { return dp_size_; }
  int tp_size() const { return tp_size_; }
  int dp_rank() const { return position_.dp_rank; }
  int tp_rank() const { return position_.tp_rank; }

 private:
  Communicator& world_;
  int dp_size_;
  int tp_size_;
  GridPosition position_;
  std::unique_ptr<Communicator> tp_;
  std::unique_ptr<Communicator> dp_;
};

}  // namespace keel::parallel
