// dp / tp sub-communicators from a world (see process_groups.h for the layout).
#include "parallel/process_groups.h"

#include <string>

#include "common/check.h"
#include "common/config.h"

namespace keel::parallel {

GridPosition grid_position(int rank, int64_t tp) {
  KEEL_CHECK(tp >= 1 && rank >= 0, "grid_position(rank=" << rank << ", tp=" << tp << ")");
  return GridPosition{static_cast<int>(rank / tp), static_cast<int>(rank % tp)};
}

void check_layout(int64_t dp, int64_t tp, int world_size) {
  if (dp < 1 || tp < 1) {
    throw ConfigError("parallel.dp (" + std::to_string(dp) + ") and parallel.tp (" + std::to_string(tp) +
                      ") must be >= 1");
  }
  if (dp * tp != world_size) {
    throw ConfigError("parallel.dp (" + std::to_string(dp) + ") x parallel.tp (" + std::to_string(tp) +
                      ") = " + std::to_string(dp * tp) + " does not match the world size " +
                      std::to_string(world_size));
  }
}

ProcessGroups::ProcessGroups(Communicator& world, int64_t dp, int64_t tp)
    : world_(world), dp_size_(static_cast<int>(dp)), tp_size_(static_cast<int>(tp)) {
  check_layout(dp, tp, world.size());
  position_ = grid_position(world.rank(), tp);
  // Every rank makes the same two splits in the same order (split is collective).
  tp_ = world.split(/*color=*/position_.dp_rank, /*key=*/position_.tp_rank);
  dp_ = world.split(/*color=*/position_.tp_rank, /*key=*/position_.dp_rank);
  KEEL_CHECK(tp_ != nullptr && dp_ != nullptr, "ProcessGroups: split returned no communicator");
  KEEL_CHECK(tp_->size() == tp_size_ && tp_->rank() == position_.tp_rank,
             "ProcessGroups: tp group of world rank " << world.rank() << " has rank " << tp_->rank() << " of "
                                                      << tp_->size() << ", expected " << position_.tp_rank
                                                      << " of " << tp_size_);
  KEEL_CHECK(dp_->size() == dp_size_ && dp_->rank() == position_.dp_rank,
             "ProcessGroups: dp group of world rank " << world.rank() << " has rank " << dp_->rank() << " of "
                                                      << dp_->size() << ", expected " << position_.dp_rank
                                                      << " of " << dp_size_);
}

}  // namespace keel::parallel
