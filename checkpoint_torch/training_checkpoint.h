// Saving and restoring everything a run needs to continue bit-identically:
//   model.safetensors      parameters by name (loadable with Python's `safetensors`)
//   optimizer.safetensors  AdamW moments as exp_avg.<name>, exp_avg_sq.<name>
//   (with tensor parallelism: model.tp<r>-of-<n>.safetensors and optimizer.tp<r>-of-<n>.safetensors,
//   one pair per TP rank, written by the DP-rank-0 member of each TP group;
//   model/tensor_parallel_layout.h says how each tensor is split)
//   optimizer[.tp<r>-of-<n>].dp<d>-of-<m>.safetensors
//                          instead of the optimizer file when the optimizer is sharded over m > 1 DP
//                          ranks (parallel.shard_optimizer): one file per DP rank, written by that
//                          rank, holding the flat range of the moments it owns, with metadata that
//                          maps the range back to named tensors (checkpoint_torch/optimizer_shard_files.h)
//   rng.safetensors        the CPU (and CUDA) generator states
//   trainer_state.json     step, tokens seen, data cursor, stability-monitor state, the layout
//                          (tp, dp, shard_optimizer, optimizer_dp_shards: m, 1 for whole tensors), ...
//   config.yaml            the resolved config
//   manifest.json          sizes and CRC-32s, written last (checkpoint/manifest.h)
// The folder is written under a temporary name and renamed when complete (checkpoint_store.h).
// Every file a rank writes is reported to the coordinator (worker/checkpoint_committer.h) and listed
// with its size and CRC-32 in the manifest. Loading re-shards: any TP degree, and the optimizer's
// whole or per-DP-rank files into an unsharded optimizer or one sharded over any DP degree.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "checkpoint/checkpoint_store.h"
#include "model/gpt.h"
#include "optim/adamw.h"

namespace keel {

struct TrainerState {
  int64_t step = 0;          // completed optimizer steps
  int64_t tokens_seen = 0;
  nlohmann::json data_cursor;  // DataCursor::to_json()
  nlohmann::json monitor;      // StabilityMonitor::state_to_json()
  nlohmann::json extra;        // anything else (best val loss, elapsed time, ...)
};

// Which files of a checkpoint this process writes and reads.
struct CheckpointRole {
  int64_t tp_rank = 0, tp_size = 1, dp_rank = 0, dp_size = 1;
  // The model shard of tp_rank and, unless each DP rank writes its own optimizer file
  // (optimizer_dp_shards() > 1), the whole optimizer file (the DP-rank-0 member of its TP group).
  bool writes_shard = true;
  bool writes_common = true;  // rng, trainer_state.json, config.yaml (world rank 0)
};

// Whether this rank writes shard files of a save of `optimizer` (the DP-rank-0 member of each TP
// group; every rank when the optimizer is sharded over more than one DP rank).
bool writes_shard_files(const AdamW& optimizer, const CheckpointRole& role);

// What a shard writer wrote, for the coordinator's two-phase commit.
struct ShardWriteReport {
  std::string shard_name;  // "tp0", ...; "tp0.dp1" when every DP rank writes its optimizer shard
  uint64_t bytes = 0;      // the files this rank wrote (model shard and/or optimizer file)
  uint32_t crc32 = 0;      // of the model shard file, or of the optimizer shard (a DP rank > 0)
  std::vector<std::string> files;  // their names, relative to the checkpoint folder
};

// The shard files (relative names) a complete save of `optimizer` with `role`'s TP and DP degrees
// has: every TP rank's model file and its optimizer file(s). Rank 0 checks them before sealing.
std::vector<std::string> expected_shard_files(const AdamW& optimizer, const CheckpointRole& role);

// Writes this process's files of the checkpoint for `state.step` into `dir` (durably).
ShardWriteReport write_checkpoint_files(const std::string& dir, Gpt& model, AdamW& optimizer,
                                        const TrainerState& state, const std::string& config_yaml,
                                        const CheckpointRole& role);

// Writes a complete single-process checkpoint for `state.step`; returns its folder. `written`, when
// given, receives what was written (for the coordinator's record).
std::string save_training_checkpoint(checkpoint::CheckpointStore& store, Gpt& model, AdamW& optimizer,
                                     const TrainerState& state, const std::string& config_yaml,
                                     ShardWriteReport* written = nullptr);

// Restores model, optimizer and RNG in place from a verified checkpoint folder; returns its state.
// A checkpoint saved with another TP degree is re-sharded (all its shards are read and each tensor
// re-cut for this rank); the optimizer's moments are re-sharded over DP as well, from whole or
// per-DP-rank files into this process's optimizer layout (optimizer_shard_files.h). Throws naming
// the file and tensor when names, shapes or dtypes do not match the built model.
TrainerState load_training_checkpoint(const std::string& checkpoint_dir, Gpt& model, AdamW& optimizer,
                                      const CheckpointRole& role = {});

// Loads only the model weights (for generate/diagnose/uptrain).
void load_model_weights(const std::string& checkpoint_dir, Gpt& model);

// Initialises a new run's model from a checkpoint (uptraining, train.init_from): every parameter
// the checkpoint holds is copied (re-sharded for `role`), shapes must match; the names of the
// model's parameters the checkpoint lacks (e.g. linear attention's new ones) are returned and keep
// their fresh init.
std::vector<std::string> init_model_from_checkpoint(const std::string& checkpoint_dir, Gpt& model,
                                                    const CheckpointRole& role = {});

}  // namespace keel
