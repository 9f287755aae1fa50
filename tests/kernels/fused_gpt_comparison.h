// The kernel tests' end-to-end check: a small GPT on CUDA under bf16 autocast, run once with the
// fused path under test switched off (LibTorch's ops) and once on, must give the same loss and
// every parameter gradient within the given relative tolerances.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/gpt.h"
#include "model/torch_compat.h"

namespace keel::testing_util {

// Vocabulary 1003 (not a multiple of anything), context 32, d 64, 2 heads.
inline ModelConfig small_gpt_config(int64_t layers, const std::string& norm = "pre_ln") {
  ModelConfig c;
  c.vocab_size = 1003;
  c.context_length = 32;
  c.num_layers = layers;
  c.num_heads = 2;
  c.d_model = 64;
  c.norm = norm;
  return c;
}

// switch_fused(model, on) turns the path under test on or off; everything else stays as built.
inline void expect_fused_matches_libtorch(const ModelConfig& config, const std::function<void(Gpt&, bool)>& switch_fused,
                                          double loss_tolerance, double gradient_tolerance, const std::string& what) {
  torch::manual_seed(5);
  Gpt model(config);
  model->to(torch::kCUDA);
  auto x = torch::randint(0, config.vocab_size, {4, config.context_length}, torch::kLong).to(torch::kCUDA);
  auto y = torch::randint(0, config.vocab_size, {4, config.context_length}, torch::kLong).to(torch::kCUDA);
  auto run = [&](bool fused) {
    switch_fused(model, fused);
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    torch::Tensor loss;
    {
      compat::CudaBf16Autocast autocast(true);
      loss = model->loss(x, y);
    }
    loss.backward();
    std::vector<torch::Tensor> grads;
    for (auto& p : model->parameters()) grads.push_back(p.grad().clone());
    return std::make_pair(loss.item<double>(), grads);
  };
  const auto [loss_ref, grads_ref] = run(false);
  const auto [loss_fused, grads_fused] = run(true);
  EXPECT_NEAR(loss_fused, loss_ref, loss_tolerance * std::abs(loss_ref)) << what;
  const auto names = model->named_parameters().keys();
  for (size_t i = 0; i < grads_ref.size(); ++i) {
    const double scale = grads_ref[i].abs().max().item<double>() + 1e-12;
    EXPECT_LE((grads_fused[i] - grads_ref[i]).abs().max().item<double>() / scale, gradient_tolerance)
        << what << " " << names[i];
  }
}

}  // namespace keel::testing_util
