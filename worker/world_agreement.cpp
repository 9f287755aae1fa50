// World-wide agreements (see world_agreement.h).
#include "worker/world_agreement.h"

#include "common/check.h"
#include "common/preemption.h"
#include "parallel/torch_adapter.h"

namespace keel {

void check_agreement(parallel::Communicator& world, torch::Device device, uint64_t value, const std::string& what) {
  if (world.size() == 1) return;
  const int64_t v = static_cast<int64_t>(value & 0x3fffffffffffffffULL);  // -v must not overflow
  auto both = torch::tensor({v, -v}, torch::kLong).to(device);  // max of both: the highest and the lowest
  parallel::all_reduce(world, both, parallel::ReduceOp::kMax);
  auto host = both.to(torch::kCPU);
  const int64_t highest = host[0].item<int64_t>(), lowest = -host[1].item<int64_t>();
  KEEL_CHECK(highest == v && lowest == v, "ranks disagree on " << what << " (rank " << world.rank() << " has " << v
                                                               << ", the world ranges " << lowest << ".." << highest
                                                               << "): stopping the job");
}

bool preemption_agreed(parallel::Communicator& world, torch::Device device) {
  int64_t flag = preemption::requested() ? 1 : 0;
  if (world.size() > 1) {
    auto any = torch::tensor({flag}, torch::kLong).to(device);
    parallel::all_reduce(world, any, parallel::ReduceOp::kMax);
    flag = any.to(torch::kCPU).item<int64_t>();
  }
  return flag != 0;
}

}  // namespace keel
