// Activation checkpointing for training: the training loss of a GPT whose blocks keep only their
// input during the forward and recompute their activations during the backward (one block at a
// time), trading about one extra forward for the memory of every block's intermediates.
// torch::utils::checkpoint is Python-only, so each block runs inside a custom autograd Function
// (activation_checkpoint.cpp). Same values and gradients as GptImpl::loss (tests/model).
// Limits: one process per model (no tensor parallelism) and no dropout (the recompute would draw
// other dropout masks); the trainer checks both before training.
#pragma once

#include <torch/torch.h>

#include "model/gpt.h"

namespace keel {

// Mean next-token cross-entropy, as GptImpl::loss. idx, targets: (B, T) int64.
torch::Tensor activation_checkpointed_loss(GptImpl& model, const torch::Tensor& idx, const torch::Tensor& targets);
// Its parts, as GptImpl::loss_terms (the z-loss term with want_z).
LmLossTerms activation_checkpointed_loss_terms(GptImpl& model, const torch::Tensor& idx, const torch::Tensor& targets,
                                               bool want_z);

}  // namespace keel
