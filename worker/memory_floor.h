// A floor under the memory one rank needs to train a config, checked before the model is built, so
// a model that can never fit (a typo'd d_model, a 7B shape on a laptop) is refused in a second with
// the numbers instead of swapping the host to a halt or dying in the CUDA allocator minutes later.
//
// A floor, not an estimate: it counts only what no run can avoid — the big matrices (embedding,
// untied head, attention and MLP weights; no biases, norms or positions) at 16 bytes per parameter
// (fp32 weights, fp32 gradients, AdamW's two fp32 moments; the moments' 8 divided over the DP ranks
// with parallel.shard_optimizer) divided over tensor-parallel ranks, and
// one micro-batch of fp32 logits with their gradient. Activations, the allocator's slack and the
// CUDA context come on top, so a config above the floor surely fails while one below may still not
// fit; refusing only above it never turns away a run that would have trained. Torch-free.
#pragma once

#include <cstdint>
#include <string>

#include "worker/run_config.h"

namespace keel {

struct TrainingMemoryFloor {
  int64_t parameters = 0;         // the counted matrices, whole model
  int64_t bytes_per_rank = 0;     // (8 + 8 / optimizer_shards) x parameters / tp + the logits
};

// optimizer_shards: the ranks the AdamW moments are split over (parallel.dp with
// parallel.shard_optimizer, else 1).
TrainingMemoryFloor training_memory_floor(const ModelConfig& model, int64_t micro_batch, int64_t seq_len, int64_t tp_size,
                                          int64_t optimizer_shards = 1);

// "" when the floor fits `capacity_bytes` (0 = unknown: nothing to check), else a message naming
// the floor, the capacity of `where` ("cuda:0 (80.0 GiB)", "this host's RAM") and the keys to change.
std::string memory_floor_problem(const RunConfig& config, int64_t tp_size, int64_t capacity_bytes,
                                 const std::string& where);

}  // namespace keel
