// Activation checkpointing: the recomputing loss gives the same loss and the same parameter
// gradients as the ordinary autograd graph of GptImpl::loss (the independent reference), for the
// recipes' block variants; on a GPU also under bf16 autocast.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/activation_checkpoint.h"
#include "model/gpt.h"
#include "model/torch_compat.h"

namespace keel {
namespace {

ModelConfig small_model(const std::string& norm, bool tie) {
  ModelConfig c;
  c.vocab_size = 97;
  c.context_length = 16;
  c.num_layers = 3;
  c.num_heads = 2;
  c.d_model = 16;
  c.norm = norm;
  c.tie_embeddings = tie;
  return c;
}

// Loss and every parameter's gradient of one backward through `loss_fn`.
std::pair<torch::Tensor, std::vector<torch::Tensor>> loss_and_grads(Gpt& model, bool checkpointed, bool bf16,
                                                                     const torch::Tensor& x, const torch::Tensor& y) {
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
  torch::Tensor loss;
  {
    compat::CudaBf16Autocast autocast(bf16);
    loss = checkpointed ? activation_checkpointed_loss(*model, x, y) : model->loss(x, y);
  }
  loss.backward();
  std::vector<torch::Tensor> grads;
  for (auto& p : model->parameters()) grads.push_back(p.grad().clone());
  return {loss.detach(), grads};
}

void expect_same(const std::string& norm, bool tie, torch::Device device, bool bf16, double tol) {
  torch::manual_seed(3);
  Gpt model(small_model(norm, tie));
  model->to(device);
  auto x = torch::randint(0, 97, {4, 16}, torch::kLong).to(device);
  auto y = torch::randint(0, 97, {4, 16}, torch::kLong).to(device);
  auto [loss_ref, grads_ref] = loss_and_grads(model, false, bf16, x, y);
  auto [loss_ckpt, grads_ckpt] = loss_and_grads(model, true, bf16, x, y);
  EXPECT_NEAR(loss_ckpt.item<double>(), loss_ref.item<double>(), tol) << norm;
  auto names = model->named_parameters().keys();
  for (size_t i = 0; i < grads_ref.size(); ++i) {
    const double scale = grads_ref[i].abs().max().item<double>() + 1e-12;
    EXPECT_LE((grads_ckpt[i] - grads_ref[i]).abs().max().item<double>() / scale, tol) << names[i];
  }
}

TEST(ActivationCheckpoint, SameLossAndGradientsAsPlainBackward) {
  expect_same("pre_ln", true, torch::kCPU, false, 1e-5);
  expect_same("none", false, torch::kCPU, false, 1e-5);
}

TEST(ActivationCheckpoint, SameUnderBf16AutocastOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  // The recompute runs on the autograd thread: it must re-enter the forward's autocast state, or
  // it would compute in fp32 and differ by far more than this.
  expect_same("pre_ln", true, torch::kCUDA, true, 1e-3);
}

TEST(ActivationCheckpoint, RefusesDropout) {
  auto config = small_model("pre_ln", true);
  config.dropout = 0.1;
  Gpt model(config);
  auto x = torch::zeros({1, 4}, torch::kLong);
  EXPECT_THROW(activation_checkpointed_loss(*model, x, x), std::exception);
}

}  // namespace
}  // namespace keel
