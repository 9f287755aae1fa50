// Saving and restoring everything a run needs to continue bit-identically:
//   model.safetensors      parameters by name (loadable with Python's `safetensors`)
//   optimizer.safetensors  AdamW moments as exp_avg.<name>, exp_avg_sq.<name>
//   (with tensor parallelism: model.tp<r>-of-<n>.safetensors and optimizer.tp<r>-of-<n>.safetensors,
//   one pair per TP rank, written by the DP-rank-0 member of each TP group;
//   model/tensor_parallel_layout.h says how each tensor is split)
//   rng.safetensors        the CPU (and CUDA) generator states
//   trainer_state.json     step, tokens seen, data cursor, stability-monitor state, ...
//   config.yaml            the resolved config
//   manifest.json          sizes and CRC-32s, written last (checkpoint/manifest.h)
// The folder is written under a temporary name and renamed when complete (checkpoint_store.h).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

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
  int64_t tp_rank = 0, tp_size = 1, dp_size = 1;
  bool writes_shard = true;   // model/optimizer shard of tp_rank (DP rank 0 of its TP group)
  bool writes_common = true;  // rng, trainer_state.json, config.yaml (world rank 0)
};

// What a shard writer wrote, for the coordinator's two-phase commit.
struct ShardWriteReport {
  std::string shard_name;  // "tp0", ...
  uint64_t bytes = 0;      // model + optimizer shard files
  uint32_t crc32 = 0;      // of the model shard file
};

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
// re-cut for this rank). Throws naming the file and tensor when names, shapes or dtypes do not
// match the built model.
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
