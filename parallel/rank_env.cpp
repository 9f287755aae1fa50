// Rank / world / local rank from the launcher's environment (see rank_env.h).
#include "parallel/rank_env.h"

#include <cerrno>
#include <climits>
#include <cstdlib>

#include "common/check.h"

namespace keel::parallel {
namespace {

struct Launcher {
  const char* source;
  const char* rank;
  const char* world;
  const char* local;
};

constexpr Launcher kLaunchers[] = {
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
};

int parse_int(const char* name, const char* text) {
  KEEL_CHECK(text != nullptr, name << " is not set");
  errno = 0;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  KEEL_CHECK(end != text && *end == '\0' && errno == 0 && value >= INT_MIN && value <= INT_MAX,
             name << "='" << text << "' is not an integer");
  return static_cast<int>(value);
}

}  // namespace

RankEnv parse_rank_env(const std::function<const char*(const char*)>& lookup) {
  for (const Launcher& l : kLaunchers) {
    const char* rank_text = lookup(l.rank);
    if (rank_text == nullptr) continue;
    RankEnv env;
    env.source = l.source;
    env.rank = parse_int(l.rank, rank_text);
    const char* world_text = lookup(l.world);
    KEEL_CHECK(world_text != nullptr, l.rank << " is set (" << l.source << ") but " << l.world << " is not");
    env.world_size = parse_int(l.world, world_text);
    const char* local_text = lookup(l.local);
    env.local_rank = local_text != nullptr ? parse_int(l.local, local_text) : 0;
    KEEL_CHECK(env.world_size >= 1, l.world << "=" << env.world_size << " must be >= 1");
    KEEL_CHECK(env.rank >= 0 && env.rank < env.world_size,
               l.rank << "=" << env.rank << " is inconsistent with " << l.world << "=" << env.world_size
                      << " (need 0 <= rank < world size)");
    KEEL_CHECK(env.local_rank >= 0 && env.local_rank < env.world_size,
               l.local << "=" << env.local_rank << " is inconsistent with " << l.world << "=" << env.world_size
                       << " (need 0 <= local rank < world size)");
    return env;
  }
  return RankEnv{};
}

RankEnv read_rank_env() {
  return parse_rank_env([](const char* name) { return static_cast<const char*>(std::getenv(name)); });
}

}  // namespace keel::parallel
