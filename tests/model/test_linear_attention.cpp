// SUPRA linear attention (model/linear_attention.h): the parallel form against an independent
// scalar-loop computation of the paper's formula, the recurrent and chunk forms against the
// parallel form, and the linear GPT's parameters (names, TP split, init shared with softmax).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "model/gpt.h"
#include "model/linear_attention.h"

namespace keel {
namespace {

// A linear-attention module with random (non-identity) feature maps and GroupNorm affines.
LinearAttention random_module(int64_t H, int64_t D, int64_t first_head, int64_t total_heads) {
  LinearAttention m(H, D, first_head, total_heads);
  torch::NoGradGuard no_grad;
  m->phi_weight.normal_(0.0, 0.5);
  m->phi_bias.normal_(0.0, 0.1);
  m->norm_weight.uniform_(0.5, 1.5);
  m->norm_bias.normal_(0.0, 0.1);
  return m;
}

// y_t = GroupNorm(sum_{s<=t} gamma_h^(t-s) <R_t phi(q_t), R_s phi(k_s)> / sqrt(D) v_s), with scalar
// loops in double, the rotation applied pair by pair (x_i, x_{i+D/2}) at angle pos * 10000^(-2i/D).
torch::Tensor naive_supra(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, LinearAttention& m,
                          int64_t first_head, int64_t total_heads) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  auto W = m->phi_weight.to(torch::kDouble), bias = m->phi_bias.to(torch::kDouble);
  auto phi_rot = [&](const torch::Tensor& x, int64_t b, int64_t h, int64_t t) {
    std::vector<double> f(D), out(D);
    for (int64_t e = 0; e < D; ++e) {
      double acc = bias[h][e].item<double>();
      for (int64_t d = 0; d < D; ++d) acc += W[h][e][d].item<double>() * x[b][h][t][d].item<double>();
      f[e] = std::max(acc, 0.0);
    }
    for (int64_t i = 0; i < D / 2; ++i) {
      const double angle = static_cast<double>(t) * std::pow(10000.0, -2.0 * i / static_cast<double>(D));
      out[i] = f[i] * std::cos(angle) - f[i + D / 2] * std::sin(angle);
      out[i + D / 2] = f[i] * std::sin(angle) + f[i + D / 2] * std::cos(angle);
    }
    return out;
  };
  auto y = torch::zeros({B, T, H * D}, torch::kDouble);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const double slope = std::pow(2.0, -8.0 * static_cast<double>(first_head + h + 1) / total_heads);
      const double gamma = std::exp(-slope);
      for (int64_t t = 0; t < T; ++t) {
        auto qt = phi_rot(q.to(torch::kDouble), b, h, t);
        std::vector<double> out(D, 0.0);
        for (int64_t s = 0; s <= t; ++s) {
          auto ks = phi_rot(k.to(torch::kDouble), b, h, s);
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qt[d] * ks[d];
          dot *= std::pow(gamma, static_cast<double>(t - s)) / std::sqrt(static_cast<double>(D));
          for (int64_t d = 0; d < D; ++d) out[d] += dot * v[b][h][s][d].item<double>();
        }
        double mean = 0, var = 0;
        for (double o : out) mean += o / D;
        for (double o : out) var += (o - mean) * (o - mean) / D;
        for (int64_t d = 0; d < D; ++d) {
          const int64_t c = h * D + d;
          y[b][t][c] = (out[d] - mean) / std::sqrt(var + 1e-5) * m->norm_weight[c].item<double>() +
                       m->norm_bias[c].item<double>();
        }
      }
    }
  }
  return y;
}

TEST(LinearAttention, ParallelFormMatchesScalarLoopFormula) {
  torch::manual_seed(3);
  const int64_t B = 2, H = 2, T = 7, D = 4;
  auto m = random_module(H, D, /*first_head=*/1, /*total_heads=*/4);
  auto q = torch::randn({B, H, T, D}), k = torch::randn({B, H, T, D}), v = torch::randn({B, H, T, D});
  auto expected = naive_supra(q, k, v, m, 1, 4);
  auto got = m->forward(q, k, v).to(torch::kDouble);
  EXPECT_TRUE(torch::allclose(got, expected, 1e-4, 1e-4)) << (got - expected).abs().max().item<double>();
}

TEST(LinearAttention, DecayIsExpOfMinusAlibiSlopes) {
  LinearAttention m(4, 8, 0, 4);
  auto gamma = m->decay();
  for (int64_t h = 0; h < 4; ++h)
    EXPECT_NEAR(gamma[h].item<double>(), std::exp(-std::pow(2.0, -2.0 * (h + 1))), 1e-7) << h;
}

TEST(LinearAttention, RecurrentFormEqualsParallelForm) {
  torch::manual_seed(5);
  const int64_t B = 2, H = 4, T = 40, D = 16;
  auto m = random_module(H, D, 0, H);
  auto q = torch::randn({B, H, T, D}), k = torch::randn({B, H, T, D}), v = torch::randn({B, H, T, D});
  auto parallel = m->forward(q, k, v);  // (B, T, H*D)
  torch::Tensor state;
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < T; ++t)
    steps.push_back(m->forward_recurrent(q.narrow(2, t, 1), k.narrow(2, t, 1), v.narrow(2, t, 1), t, state));
  auto recurrent = torch::cat(steps, 1);
  EXPECT_TRUE(torch::allclose(recurrent, parallel, 1e-5, 1e-5)) << (recurrent - parallel).abs().max().item<double>();
  // The state has a fixed size, whatever the length.
  EXPECT_EQ(state.sizes(), torch::IntArrayRef({B, H, D, D}));
}

TEST(LinearAttention, ChunkFormEqualsParallelForm) {
  torch::manual_seed(6);
  const int64_t B = 1, H = 2, T = 33, D = 8;
  auto m = random_module(H, D, 0, H);
  auto q = torch::randn({B, H, T, D}), k = torch::randn({B, H, T, D}), v = torch::randn({B, H, T, D});
  auto parallel = m->forward(q, k, v);
  torch::Tensor state;
  std::vector<torch::Tensor> parts;
  int64_t start = 0;
  for (int64_t len : {9, 1, 1, 15, 7}) {
    parts.push_back(m->forward_recurrent(q.narrow(2, start, len), k.narrow(2, start, len), v.narrow(2, start, len),
                                         start, state));
    start += len;
  }
  ASSERT_EQ(start, T);
  auto chunked = torch::cat(parts, 1);
  EXPECT_TRUE(torch::allclose(chunked, parallel, 1e-5, 1e-5)) << (chunked - parallel).abs().max().item<double>();
}

TEST(LinearAttention, DiagnosticWeightsAreCausalDistributions) {
  torch::manual_seed(8);
  auto m = random_module(2, 8, 0, 2);
  auto q = torch::randn({1, 2, 10, 8}), k = torch::randn({1, 2, 10, 8});
  auto w = m->attention_weights(q, k);  // (1, 2, 10, 10)
  EXPECT_TRUE(torch::allclose(w.sum(-1), torch::ones({1, 2, 10}), 1e-5, 1e-5));
  EXPECT_EQ(w.triu(1).abs().max().item<double>(), 0.0);
  EXPECT_GE(w.min().item<double>(), 0.0);
}

TEST(LinearAttention, RotaryMatchesPairwiseRotation) {
  auto x = torch::arange(8, torch::kFloat).view({1, 1, 2, 4});
  auto r = apply_rotary(x, /*start_pos=*/3);
  for (int64_t t = 0; t < 2; ++t) {
    for (int64_t i = 0; i < 2; ++i) {
      const double angle = (3.0 + t) * std::pow(10000.0, -2.0 * i / 4.0);
      const double a = x[0][0][t][i].item<double>(), b = x[0][0][t][i + 2].item<double>();
      EXPECT_NEAR(r[0][0][t][i].item<double>(), a * std::cos(angle) - b * std::sin(angle), 1e-5);
      EXPECT_NEAR(r[0][0][t][i + 2].item<double>(), a * std::sin(angle) + b * std::cos(angle), 1e-5);
    }
  }
}

ModelConfig tiny_linear() {
  ModelConfig c;
  c.vocab_size = 61;
  c.context_length = 16;
  c.num_layers = 2;
  c.num_heads = 2;
  c.d_model = 16;
  c.attention = "linear";
  return c;
}

TEST(LinearGpt, KeepsTheSoftmaxWeightsAndAddsSupraParameters) {
  ModelConfig softmax_config = tiny_linear();
  softmax_config.attention = "softmax";
  torch::manual_seed(11);
  Gpt softmax_model(softmax_config);
  torch::manual_seed(11);
  Gpt linear_model(tiny_linear());
  auto linear_params = linear_model->named_parameters();
  for (const auto& item : softmax_model->named_parameters()) {
    ASSERT_TRUE(linear_params.contains(item.key())) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), linear_params[item.key()])) << item.key();
  }
  for (const char* name : {"blocks.0.attn.supra.phi_weight", "blocks.0.attn.supra.phi_bias",
                           "blocks.1.attn.supra.norm_weight", "blocks.1.attn.supra.norm_bias"}) {
    ASSERT_TRUE(linear_params.contains(name)) << name;
    EXPECT_EQ(shard_kind(name), ShardKind::kRows) << name;
    EXPECT_FALSE(linear_model->decays(name)) << name;
  }
  EXPECT_TRUE(torch::equal(linear_params["blocks.0.attn.supra.phi_weight"][1], torch::eye(8)));
  EXPECT_EQ(linear_model->num_parameters(),
            softmax_model->num_parameters() + 2 * (2 * 8 * 8 + 2 * 8 + 2 * 16));
}

TEST(LinearGpt, IsCausalAndTrains) {
  torch::manual_seed(12);
  Gpt model(tiny_linear());
  auto idx = torch::randint(0, 61, {2, 12});
  auto changed = idx.clone();
  changed.index_put_({torch::indexing::Slice(), 8}, (idx.index({torch::indexing::Slice(), 8}) + 1) % 61);
  auto a = model->forward(idx), b = model->forward(changed);
  EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 8), b.narrow(1, 0, 8), 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(a.narrow(1, 8, 1), b.narrow(1, 8, 1)));
  auto loss = model->loss(idx, changed);
  loss.backward();
  auto grad = model->named_parameters()["blocks.0.attn.supra.phi_weight"].grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_GT(grad.abs().sum().item<double>(), 0.0);
}

TEST(LinearGpt, AttentionKindIsValidated) {
  ModelConfig c;
  std::vector<ConfigSectionRef> sections = {{"model", [&](ConfigVisitor& v) { c.visit(v); }}};
  apply_override(sections, "model.attention=linear");
  EXPECT_EQ(c.attention, "linear");
  EXPECT_THROW(apply_override(sections, "model.attention=performer"), ConfigError);
  c.d_model = 18;
  c.num_heads = 2;  // head_dim 9: odd, rotary positions impossible
  EXPECT_THROW(c.validate(), ConfigError);
}

}  // namespace
}  // namespace keel
