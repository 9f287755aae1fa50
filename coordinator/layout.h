// The DP x TP process layout: which global rank has which data-parallel and tensor-parallel rank,
// and which communicator groups exist. Pure arithmetic, shared by the coordinator and its tests.
// TP ranks are adjacent (rank = dp_rank * tp + tp_rank), as in Megatron-LM, so a TP group, which
// talks every layer, stays on one host's fast links while DP groups span hosts.
#pragma once

#include <string>
#include <vector>

namespace keel::coord {

struct GroupLayout {
  std::string name;        // "world", "dp_<tp_rank>" or "tp_<dp_rank>"
  std::vector<int> ranks;  // ascending
};

class Layout {
 public:
  // Throws KeelError unless world == dp * tp with all three >= 1. dp == 0 means world / tp.
  Layout(int world_size, int dp_size, int tp_size);

  int world_size() const { return world_; }
  int dp_size() const { return dp_; }
  int tp_size() const { return tp_; }
  int dp_rank(int rank) const { return rank / tp_; }
  int tp_rank(int rank) const { return rank % tp_; }
  // Shard writers of a checkpoint: the dp_rank == 0 member of each TP group (tp_size writers), or
  // every rank when each DP rank writes its own optimizer shard (world_size writers).
  bool is_shard_writer(int rank, bool every_dp_rank = false) const { return every_dp_rank || dp_rank(rank) == 0; }
  int shard_writers(bool every_dp_rank = false) const { return every_dp_rank ? world_ : tp_; }

  // The groups `rank` belongs to: world, dp_<tp_rank>, tp_<dp_rank> (in that order).
  std::vector<GroupLayout> groups_of(int rank) const;
  // Every group of the job (world, all dp_<i>, all tp_<i>).
  std::vector<GroupLayout> all_groups() const;

 private:
  GroupLayout world_group() const;
  GroupLayout dp_group(int tp_rank) const;
  GroupLayout tp_group(int dp_rank) const;

  int world_, dp_, tp_;
};

}  // namespace keel::coord
