// The data-parallel side of the sharded optimizer (ZeRO-1, parallel.shard_optimizer): each DP rank
// owns 1/dp of the flat parameter space (optim/adamw.h: every parameter flattened and concatenated,
// padded to a multiple of dp; rank r owns [r S, (r + 1) S), S = ceil(N / dp)) and keeps the AdamW
// moments of that range only. After each update the ranks all-gather the updated segments so every
// rank holds the whole parameters again. A checkpoint needs no collective: each DP rank writes the
// moments of its own range to its own file (optimizer[.tpR-of-N].dpD-of-M.safetensors), and loading
// re-shards them for any DP degree, sharded or not (checkpoint_torch/optimizer_shard_files.h).
//
// ZeRO-1 (the default of sharding) all-reduces the gradients whole: the monitor's per-layer norms,
// clipping and the update-to-weight ratio stay exactly as without sharding, and on GPUs the
// reduction overlaps backward. ZeRO-2 (parallel.shard_gradients) reduce-scatters them instead: each
// rank keeps the averaged gradient of its range only and frees the whole ones after the step's
// reduction; the monitor's norms are then summed from the ranges (each parameter's squared norm
// all-reduced over DP), clipping scales the range, and the optimizer reads it. What ZeRO-1 saves
// is the moments (8 bytes per parameter become 8 / dp); ZeRO-2 also the 4 bytes of gradient kept
// between the reduction and the next backward (not the peak during backward: no overlap here).
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
  OptimizerSharding(parallel::Communicator& dp, AdamW& optimizer, bool shard_gradients = false,
                    int64_t chunk_elements = int64_t{1} << 22);

  // After optimizer.step(): every rank's updated segments into every rank's parameters.
  void all_gather_parameters();

  int64_t shard_size() const { return shard_; }
  bool shards_gradients() const { return shard_gradients_; }

  // ZeRO-2, after backward: every rank's whole .grad averaged into this rank's range (a chunked
  // reduce-scatter; a parameter without a gradient counts as zeros), the whole gradients freed; the
  // optimizer then reads the range.
  void reduce_scatter_gradients();
  // ZeRO-2: (P) float on the parameters' device, parameter i's squared gradient norm over the whole
  // DP group (its pieces in each rank's range, summed over DP). One small all-reduce.
  torch::Tensor gradient_squares();
  // ZeRO-2: multiplies the range's gradient by `factor` (clipping).
  void scale_gradient(double factor);

 private:
  // One chunked all-gather of the flat space: `read(begin, len, dst)` fills dst (len elements)
  // from this rank's owned flat range; `write(begin, src)` stores src at flat position begin.
  template <typename Read, typename Write>
  void all_gather_flat(const Read& read, const Write& write);

  parallel::Communicator& dp_;
  AdamW& optimizer_;
  int64_t shard_ = 0;   // S: elements each rank owns (the last ranks' padded)
  int64_t chunk_ = 0;
  bool shard_gradients_ = false;
  torch::Tensor owned_grad_;  // ZeRO-2: (owned range) the averaged gradient of this rank's range
};

}  // namespace keel
