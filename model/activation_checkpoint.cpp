// Activation checkpointing (see activation_checkpoint.h).
#include "model/activation_checkpoint.h"

#include <cstdint>

#include "common/check.h"
#include "model/lm_loss.h"
#include "model/torch_compat.h"

namespace keel {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One block whose forward keeps only its input x (B, T, C). Backward re-runs the block with
// gradients on (under the forward's autocast state) and back-propagates through the recomputed
// graph: the block's parameter gradients accumulate into their .grad as in an ordinary backward,
// and the input's gradient is returned.
struct CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, BlockImpl* block) {
    ctx->save_for_backward({x});
    ctx->saved_data["block"] = reinterpret_cast<int64_t>(block);
    ctx->saved_data["autocast"] = compat::cuda_autocast_enabled();
    return block->forward(x);  // Function::apply runs this without recording a graph
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto* block = reinterpret_cast<BlockImpl*>(ctx->saved_data["block"].toInt());
    const torch::Tensor input = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    torch::Tensor output;
    {
      torch::AutoGradMode grad_on(true);
      compat::CudaBf16Autocast autocast(ctx->saved_data["autocast"].toBool());
      output = block->forward(input);  // (B, T, C), with its graph this time
    }
    torch::autograd::backward({output}, {grad_outputs[0]});
    return {input.grad(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor activation_checkpointed_loss(GptImpl& model, const torch::Tensor& idx, const torch::Tensor& targets) {
  return activation_checkpointed_loss_terms(model, idx, targets, /*want_z=*/false).cross_entropy;
}

LmLossTerms activation_checkpointed_loss_terms(GptImpl& model, const torch::Tensor& idx, const torch::Tensor& targets,
                                               bool want_z) {
  KEEL_CHECK(!model.tensor_parallel().split(), "activation checkpointing runs on an unsplit model (parallel.tp=1)");
  KEEL_CHECK(model.config().dropout == 0.0, "activation checkpointing needs model.dropout=0 (the recompute would "
                                            "draw other dropout masks)");
  auto x = model.embed(idx);  // (B, T, C)
  for (const auto& module : *model.blocks) x = CheckpointedBlock::apply(x, module->as<BlockImpl>());
  if (model.ln_f) x = model.ln_f(x);
  auto logits = model.lm_head ? model.lm_head(x) : torch::matmul(x, model.wte->weight.t());  // (B, T, V)
  return lm_loss_terms(logits.view({-1, logits.size(-1)}), targets.reshape({-1}), model.fused_cross_entropy(),
                       /*grad_over_logits=*/true, want_z);  // the logits are local: nothing reads them after the loss
}

}  // namespace keel
