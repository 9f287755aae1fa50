// The data-parallel side of the sharded optimizer (ZeRO-1, parallel.shard_optimizer): each DP rank
// owns 1/dp of the flat parameter space (optim/adamw.h: every parameter flattened and concatenated,
// padded to a multiple of dp; rank r owns [r S, (r + 1) S), S = ceil(N / dp)) and keeps the AdamW
// moments of that range only. After each update the ranks all-gather the updated segments so every
// rank holds the whole parameters again; before a checkpoint they all-gather the moments, so the
// checkpoint holds whole tensors in the existing per-name format (optimizer[.tpR-of-N].safetensors)
// and any DP degree, sharded or not, can load it (each rank keeps its own range on load).
//
// Why gradients are still all-reduced whole (not reduce-scattered, ZeRO-2): the stability monitor
// reads per-layer gradient norms and clips before the update, and the update-to-weight ratio is
// measured on whole parameters; both stay exactly as without sharding. What sharding saves is the
// moments: 8 bytes per parameter become 8 / dp.
//
// With tensor parallelism each TP rank shards its own local parameters over its DP group. Every
// call here is collective over the DP group.
#pragma once

#include <cstdint>

#include "optim/adamw.h"
#include "parallel/communicator.h"

namespace keel {

// The range rank `rank` of `size` owns in a flat space of `total` elements.
FlatRange owned_flat_range(int64_t total, int rank, int size);

class OptimizerSharding {
 public:
  // `optimizer` must have been built with owned_flat_range(flat_size, dp.rank(), dp.size()).
  // `chunk_elements`: the most elements per rank one all-gather moves (bounds the temporary buffer
  // to dp x chunk_elements).
  OptimizerSharding(parallel::Communicator& dp, AdamW& optimizer, int64_t chunk_elements = int64_t{1} << 22);

  // After optimizer.step(): every rank's updated segments into every rank's parameters.
  void all_gather_parameters();
  // Before a checkpoint save: the whole moments, handed to optimizer.set_gathered_moments().
  void gather_moments_for_save();

  int64_t shard_size() const { return shard_; }

 private:
  // One chunked all-gather of the flat space: `read(begin, len, dst)` fills dst (len elements)
  // from this rank's owned flat range; `write(begin, src)` stores src at flat position begin.
  template <typename Read, typename Write>
  void all_gather_flat(const Read& read, const Write& write);

  parallel::Communicator& dp_;
  AdamW& optimizer_;
  int64_t shard_ = 0;   // S: elements each rank owns (the last ranks' padded)
  int64_t chunk_ = 0;
};

}  // namespace keel
