// `keel import --format hf DIR --out CHECKPOINT`: a Hugging Face GPT-2 folder (config.json +
// model.safetensors, or model.safetensors.index.json and its shards) as a Keel checkpoint folder
// that `train.init_from` accepts, so a run can start from a pretrained GPT-2-shaped model.
// Torch-free header (LibTorch stays inside keel_interop).
//
// The checkpoint folder (atomic: staged and renamed, like the export):
//   model.safetensors    Keel names and layouts (hf_names.h), fp32 (F16/BF16 sources widened)
//   trainer_state.json   step 0, layout tp=1, extra.imported_from = DIR
//   config.yaml          the caller's resolved config; its model section = model_config_from_hf
//   manifest.json        sizes and CRC-32s (checkpoint/manifest.h), so the folder verifies
// It holds no optimizer or RNG state: it starts runs (train.init_from, keel score/generate/
// diagnose/export), it does not resume them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace keel::interop {

// The model section of DIR/config.json (hf_config.h); ConfigError naming the GPT2Config field
// for anything Keel cannot compute.
ModelConfig read_hf_model_config(const std::string& hf_dir);

struct HfImportOptions {
  std::string hf_dir;
  ModelConfig model;        // read_hf_model_config(hf_dir)
  std::string config_yaml;  // the resolved run config to store (its model section = model)
  std::string out_dir;
  bool overwrite = false;
};

struct HfImportResult {
  int64_t parameters = 0;               // elements of the Keel model
  std::vector<std::string> source_dtypes;  // dtypes found in the HF files ("F32", "BF16", ...)
  std::vector<std::string> skipped;     // HF tensors that are not weights (mask buffers, a tied lm_head)
};

// Throws KeelError naming the tensor for a missing, unexpected or misshapen tensor; nothing is
// left at out_dir on any error.
HfImportResult import_hf(const HfImportOptions& options);

}  // namespace keel::interop
