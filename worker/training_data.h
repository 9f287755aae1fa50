// The training data as the trainer needs it: the dataset prepared when missing (in a separate
// `keel-prepare` process: SentencePiece must not share a process with libprotobuf, see
// data/dataset_meta.h), batches as device tensors, and where a step's batch came from (for the
// monitor's events: epoch, shard, offset, document, boundaries crossed).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "data/data_config.h"
#include "data/data_loader.h"
#include "stability/stability_monitor.h"

namespace keel {

// Prepares data.dir when it has no dataset and data.auto_prepare allows it; throws otherwise.
void ensure_dataset(const DataConfig& data);

// A batch of int32 token ids as an int64 (B, T) tensor on `device`. On CUDA the ids travel through
// pinned memory asynchronously and are widened on the GPU, so the host never waits for the GPU
// here (a pageable copy would drain the stream first). The caching host allocator keeps each
// pinned buffer until its copy has completed, so consecutive micro-batches never overwrite one in flight.
torch::Tensor to_device_tokens(const std::vector<int32_t>& tokens, int64_t batch, int64_t seq, torch::Device device);

// The data of one step: from cursor `before` to `after`, `tokens` tokens.
DataPosition data_position(const DataCursor& before, const DataCursor& after, int64_t tokens);
// Adds the shard name and document index to `data` (a shard scan; `eos_id` < 0: names only).
void describe_data(DataPosition& data, const DataLoader& loader, int32_t eos_id);

}  // namespace keel
