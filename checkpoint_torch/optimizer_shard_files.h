// The AdamW moments in a checkpoint folder, in one of two layouts, and loading either into an
// optimizer of any layout (re-sharding over DP and TP):
//
//   whole tensors   optimizer[.tp<r>-of-<n>].safetensors: exp_avg.<name>, exp_avg_sq.<name> shaped
//                   like the parameters, one file per TP rank (written by its DP-rank-0 member).
//                   An unsharded optimizer writes it, and so does a sharded one over a DP group of
//                   one (its one shard is everything: the same bytes).
//   DP flat shards  optimizer[.tp<r>-of-<n>].dp<d>-of-<m>.safetensors, one file per DP rank d of each
//                   TP rank r, written by that rank itself (no gathering): an optimizer sharded over
//                   m > 1 DP ranks (ZeRO-1/2). Tensors "exp_avg" and "exp_avg_sq", 1-D, the moments
//                   of the flat range the rank owns (optim/flat_range.h); metadata:
//                     format=keel-optimizer-shard, step_count, tp_rank, tp_size, dp_rank, dp_size,
//                     flat_begin, flat_end (the owned range), flat_size (elements of all parameters),
//                     padded_flat_size (m x ceil(flat_size / m)), params: JSON
//                     [{"name", "shape", "offset"}, ...] in flat order, which maps any flat position
//                     back to a named tensor's element.
//                   The m files' ranges tile [0, flat_size) in DP-rank order.
//
// trainer_state.json's layout.optimizer_dp_shards says which layout a checkpoint has (m; absent or
// 1: whole tensors, as in every checkpoint before per-rank files). Loading fills this process's
// optimizer (whole, or its own flat range) from either layout saved with any DP degree; with the
// same TP degree it reads only its own TP rank's files, and of the flat shards only the bytes of its
// range; with another TP degree it rebuilds each tensor whole and re-cuts it
// (model/tensor_parallel_layout.h).
#pragma once

#include <cstdint>
#include <string>

#include "optim/adamw.h"

namespace keel {

// "optimizer[.tp<r>-of-<n>].safetensors" and "optimizer[.tp<r>-of-<n>].dp<d>-of-<m>.safetensors".
std::string optimizer_file_name(int64_t tp_rank, int64_t tp_size);
std::string optimizer_shard_file_name(int64_t tp_rank, int64_t tp_size, int64_t dp_rank, int64_t dp_size);

// The number of optimizer files per TP rank a save of `optimizer` makes: dp_size when it is sharded
// over more than one DP rank (every DP rank writes its own flat shard), else 1 (whole tensors).
int64_t optimizer_dp_shards(const AdamW& optimizer, int64_t dp_size);

// Writes this rank's optimizer file into `dir` (durably) in the layout optimizer_dp_shards() picks;
// returns its name (relative to `dir`). A sharded optimizer over dp_size > 1 must own
// owned_flat_range(flat_size, dp_rank, dp_size).
std::string write_optimizer_file(const std::string& dir, const AdamW& optimizer, int64_t tp_rank, int64_t tp_size,
                                 int64_t dp_rank, int64_t dp_size);

// Fills `optimizer`'s moments (whole, or its owned range) in place for TP rank `tp_rank` of
// `tp_size` from the checkpoint in `dir` saved with TP degree `saved_tp` and `saved_dp_shards`
// optimizer files per TP rank. The step count is the caller's (trainer_state.json). Throws naming
// the file (and tensor) when a file is missing, damaged or does not match the optimizer.
void load_optimizer_files(const std::string& dir, int64_t saved_tp, int64_t saved_dp_shards, AdamW& optimizer,
                          int64_t tp_rank, int64_t tp_size);

}  // namespace keel
