// Saving and restoring everything a run needs to continue bit-identically:
//   model.safetensors      parameters by name (loadable with Python's `safetensors`)
//   optimizer.safetensors  AdamW moments as exp_avg.<name>, exp_avg_sq.<name>
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

// Writes a complete checkpoint for `state.step`; returns its folder.
std::string save_training_checkpoint(checkpoint::CheckpointStore& store, Gpt& model, AdamW& optimizer,
                                     const TrainerState& state, const std::string& config_yaml);

// Restores model, optimizer and RNG in place from a verified checkpoint folder; returns its state.
// Throws naming the file and tensor when names, shapes or dtypes do not match the built model.
TrainerState load_training_checkpoint(const std::string& checkpoint_dir, Gpt& model, AdamW& optimizer);

// Loads only the model weights (for generate/diagnose/uptrain).
void load_model_weights(const std::string& checkpoint_dir, Gpt& model);

}  // namespace keel
