// Whether a run can resume from a checkpoint with the config it has now. The checkpoint's model
// was built from the config saved beside it (config.yaml): a different model shape (width, depth,
// heads, vocabulary, norm, activation, attention, ...) cannot take its tensors. Comparing the two
// configs names the keys that differ, checkpoint vs now, as a config error (exit 2) before any
// tensor is loaded, instead of a tensor-shape error deep in the load. Torch-free.
#pragma once

#include <string>
#include <vector>

#include "worker/run_config.h"

namespace keel {

// "model.d_model: checkpoint 64, now 128" for each model key that changes the architecture;
// model.init, model.scaled_out_proj (initialisation only) and model.dropout may differ.
std::vector<std::string> model_differences(RunConfig saved, RunConfig now);

// Throws ConfigError naming every differing key when checkpoint folder `checkpoint_dir`'s
// config.yaml describes another model than `now`. A checkpoint without a readable config.yaml
// (an older or foreign one) is left to the tensor checks of the load.
void check_resume_compatible(const std::string& checkpoint_dir, const RunConfig& now);

}  // namespace keel
