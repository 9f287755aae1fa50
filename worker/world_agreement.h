// Collective agreements that keep every rank of a job acting alike: the same verdict, the same
// checkpoint to resume from, the same answer to "was a preemption signal received?". Each is one
// tiny all-reduce over the world (nothing at all in a world of one).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "parallel/communicator.h"

namespace keel {

// Throws (stopping the job) unless every rank of `world` passed the same value; `what` names it.
void check_agreement(parallel::Communicator& world, torch::Device device, uint64_t value, const std::string& what);
// True when any rank got a preemption signal (common/preemption.h); every rank gets the same answer.
bool preemption_agreed(parallel::Communicator& world, torch::Device device);

}  // namespace keel
