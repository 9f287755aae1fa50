// DP x TP layout arithmetic (see layout.h).
#include "coordinator/layout.h"

#include "common/check.h"

namespace keel::coord {

Layout::Layout(int world_size, int dp_size, int tp_size) : world_(world_size), dp_(dp_size), tp_(tp_size) {
  KEEL_CHECK(world_ >= 1, "world size must be >= 1, got " << world_);
  KEEL_CHECK(tp_ >= 1, "tp size must be >= 1, got " << tp_);
  if (dp_ == 0) {
    KEEL_CHECK(world_ % tp_ == 0, "world size " << world_ << " is not divisible by tp size " << tp_);
    dp_ = world_ / tp_;
  }
  KEEL_CHECK(dp_ >= 1, "dp size must be >= 1, got " << dp_);
  KEEL_CHECK(static_cast<long long>(dp_) * tp_ == world_,
             "layout dp=" << dp_ << " x tp=" << tp_ << " = " << static_cast<long long>(dp_) * tp_
                          << " does not match world size " << world_);
}

GroupLayout Layout::world_group() const {
  GroupLayout g{"world", {}};
  for (int r = 0; r < world_; ++r) g.ranks.push_back(r);
  return g;
}

GroupLayout Layout::dp_group(int tp_rank) const {
  GroupLayout g{"dp_" + std::to_string(tp_rank), {}};
  for (int d = 0; d < dp_; ++d) g.ranks.push_back(d * tp_ + tp_rank);
  return g;
}

GroupLayout Layout::tp_group(int dp_rank) const {
  GroupLayout g{"tp_" + std::to_string(dp_rank), {}};
  for (int t = 0; t < tp_; ++t) g.ranks.push_back(dp_rank * tp_ + t);
  return g;
}

std::vector<GroupLayout> Layout::groups_of(int rank) const {
  KEEL_CHECK(rank >= 0 && rank < world_, "rank " << rank << " out of range [0, " << world_ << ")");
  return {world_group(), dp_group(tp_rank(rank)), tp_group(dp_rank(rank))};
}

std::vector<GroupLayout> Layout::all_groups() const {
  std::vector<GroupLayout> out{world_group()};
  for (int t = 0; t < tp_; ++t) out.push_back(dp_group(t));
  for (int d = 0; d < dp_; ++d) out.push_back(tp_group(d));
  return out;
}

}  // namespace keel::coord
