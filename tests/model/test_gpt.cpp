// GPT model: attention against an independent loop computation, causal masking, parameter counts
// and init statistics per recipe.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "model/gpt.h"

namespace keel {
namespace {

ModelConfig tiny(const std::string& recipe = "vanilla") {
  ModelConfig c;
  c.vocab_size = 97;
  c.context_length = 16;
  c.num_layers = 2;
  c.num_heads = 2;
  c.d_model = 16;
  if (recipe == "scaled-embed") {
    c.embed_scale = "sqrt_d";
    c.init = "small";
  } else if (recipe == "embed-ln") {
    c.embed_norm = "layernorm";
    c.init = "small";
  } else if (recipe == "normfree-gelu") {
    c.norm = "none";
  } else if (recipe == "normfree-relu") {
    c.norm = "none";
    c.activation = "relu";
  } else if (recipe == "swiglu-untied") {
    c.activation = "swiglu";
    c.tie_embeddings = false;
  }
  return c;
}

// Attention computed with scalar loops in double: q_i . k_j / sqrt(D), softmax over j <= i.
TEST(Attention, MatchesNaiveLoopSoftmax) {
  torch::manual_seed(0);
  auto config = tiny();
  CausalSelfAttention attn(config);
  const int64_t B = 2, T = 7, C = config.d_model, H = config.num_heads, D = C / H;
  auto x = torch::randn({B, T, C});
  auto y = attn(x).to(torch::kDouble);

  auto qkv = torch::nn::functional::linear(x.to(torch::kDouble), attn->c_attn->weight.to(torch::kDouble),
                                           attn->c_attn->bias.to(torch::kDouble));
  auto q = qkv.slice(2, 0, C), k = qkv.slice(2, C, 2 * C), v = qkv.slice(2, 2 * C, 3 * C);
  auto heads_out = torch::zeros({B, T, C}, torch::kDouble);
  auto qa = q.accessor<double, 3>(), ka = k.accessor<double, 3>(), va = v.accessor<double, 3>();
  auto oa = heads_out.accessor<double, 3>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> scores(i + 1);
        double max_score = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += qa[b][i][h * D + d] * ka[b][j][h * D + d];
          scores[j] = s / std::sqrt(static_cast<double>(D));
          max_score = std::max(max_score, scores[j]);
        }
        double total = 0;
        for (auto& s : scores) total += (s = std::exp(s - max_score));
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j <= i; ++j) acc += scores[j] / total * va[b][j][h * D + d];
          oa[b][i][h * D + d] = acc;
        }
      }
  auto expected = torch::nn::functional::linear(heads_out, attn->c_proj->weight.to(torch::kDouble),
                                                attn->c_proj->bias.to(torch::kDouble));
  EXPECT_LT((y - expected).abs().max().item<double>(), 1e-5);
}

TEST(Attention, ProbabilitiesAreCausalAndNormalised) {
  torch::manual_seed(1);
  auto config = tiny();
  CausalSelfAttention attn(config);
  auto p = attn->attention_probabilities(torch::randn({1, 5, config.d_model}));  // (1, H, 5, 5)
  EXPECT_LT((p.sum(-1) - 1).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(p.triu(1).abs().max().item<double>(), 0.0);
}

class Recipes : public ::testing::TestWithParam<std::string> {};

TEST_P(Recipes, ChangingALaterTokenNeverChangesEarlierLogits) {
  torch::manual_seed(2);
  Gpt model(tiny(GetParam()));
  model->eval();
  auto idx = torch::randint(0, 97, {2, 12}, torch::kLong);
  auto logits = model(idx);
  auto changed = idx.clone();
  changed.index_put_({torch::indexing::Slice(), 8}, (idx.index({torch::indexing::Slice(), 8}) + 5) % 97);
  auto logits2 = model(changed);
  using torch::indexing::Slice;
  EXPECT_EQ((logits.index({Slice(), Slice(0, 8)}) - logits2.index({Slice(), Slice(0, 8)})).abs().max().item<double>(),
            0.0);
  EXPECT_GT((logits.index({Slice(), Slice(8)}) - logits2.index({Slice(), Slice(8)})).abs().max().item<double>(), 0.0);
}

// Parameter count from the architecture, written out independently of the module code.
int64_t expected_parameters(const ModelConfig& c) {
  const int64_t d = c.d_model, V = c.vocab_size, T = c.context_length, L = c.num_layers;
  const int64_t hidden = c.activation == "swiglu" ? ((8 * d / 3) + 63) / 64 * 64 : 4 * d;
  const int64_t ln = 2 * d;
  int64_t block = (d * 3 * d + 3 * d) + (d * d + d);  // attention c_attn + c_proj
  block += c.activation == "swiglu" ? 2 * (d * hidden + hidden) + hidden * d + d : (d * hidden + hidden) + (hidden * d + d);
  if (c.norm == "pre_ln") block += 2 * ln;
  int64_t total = V * d + T * d + L * block;
  if (c.embed_norm == "layernorm") total += ln;
  if (c.norm == "pre_ln") total += ln;
  if (!c.tie_embeddings) total += V * d;
  return total;
}

TEST_P(Recipes, ParameterCountMatchesFormula) {
  auto config = tiny(GetParam());
  Gpt model(config);
  EXPECT_EQ(model->num_parameters(), expected_parameters(config));
}

INSTANTIATE_TEST_SUITE_P(AllRecipes, Recipes,
                         ::testing::Values("vanilla", "scaled-embed", "embed-ln", "normfree-gelu", "normfree-relu",
                                           "swiglu-untied"));

TEST(Params, Gpt2SmallShapeHas124MParameters) {
  ModelConfig c;
  c.vocab_size = 50257;
  c.context_length = 1024;
  c.num_layers = 12;
  c.num_heads = 12;
  c.d_model = 768;
  EXPECT_EQ(expected_parameters(c), 124439808);  // GPT-2 small, as published
}

// Init statistics: with d large enough the sample std is within a few percent of the formula.
TEST(Init, StatisticsMatchRecipeFormulas) {
  for (const std::string recipe : {"vanilla", "scaled-embed"}) {
    ModelConfig c = tiny(recipe);
    c.d_model = 256;
    c.num_heads = 4;
    c.num_layers = 3;
    c.vocab_size = 1000;
    torch::manual_seed(3);
    Gpt model(c);
    const double std = recipe == "vanilla" ? 0.02 : std::sqrt(2.0 / (5.0 * 256));
    const double out_std = std / std::sqrt(2.0 * 3);
    for (const auto& item : model->named_parameters()) {
      const auto& name = item.key();
      const auto& p = item.value();
      const double sample = p.std().item<double>();
      if (name.find("ln_") != std::string::npos) {
        EXPECT_EQ(p.mean().item<double>(), name.find("bias") != std::string::npos ? 0.0 : 1.0) << name;
      } else if (name.find(".bias") != std::string::npos) {
        EXPECT_EQ(p.abs().max().item<double>(), 0.0) << name;
      } else if (name.find("c_proj.weight") != std::string::npos) {
        EXPECT_NEAR(sample, out_std, 0.05 * out_std) << name;
      } else {
        EXPECT_NEAR(sample, std, 0.05 * std) << name;
      }
    }
  }
}

TEST(Init, EmbeddingOutputStdFollowsRecipe) {
  // vanilla: std of (wte + wpe) ~ 0.02 * sqrt(2); scaled-embed: sqrt(d) * sqrt(2/(5d)) * sqrt(2) ~ 0.89.
  for (const std::string recipe : {"vanilla", "scaled-embed", "embed-ln"}) {
    ModelConfig c = tiny(recipe);
    c.d_model = 256;
    c.num_heads = 4;
    c.vocab_size = 1000;
    c.context_length = 64;
    torch::manual_seed(4);
    Gpt model(c);
    auto idx = torch::randint(0, 1000, {8, 64}, torch::kLong);
    const double std = model->embed(idx).std().item<double>();
    if (recipe == "vanilla") EXPECT_NEAR(std, 0.02 * std::sqrt(2.0), 0.003);
    if (recipe == "scaled-embed") EXPECT_NEAR(std, std::sqrt(2.0 / 5.0) * std::sqrt(2.0), 0.05);
    if (recipe == "embed-ln") EXPECT_NEAR(std, 1.0, 0.01);
  }
}

TEST(Loss, StartsNearLogVocab) {
  torch::manual_seed(5);
  Gpt model(tiny());
  auto idx = torch::randint(0, 97, {4, 16}, torch::kLong);
  auto targets = torch::randint(0, 97, {4, 16}, torch::kLong);
  EXPECT_NEAR(model->loss(idx, targets).item<double>(), std::log(97.0), 0.15);
}

}  // namespace
}  // namespace keel
