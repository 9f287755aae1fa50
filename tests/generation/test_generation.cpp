// Generation: KV-cache / linear-state decoding equals full recomputation token by token, the
// sampler's filters against hand-computed distributions, TDA at threshold 0 equals dense decoding
// exactly, the sliced MLP equals the dense MLP with the dropped neurons zeroed, and the TDA sweep of
// keel generate measures threshold 0 as the dense reference.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "generation/generator.h"
#include "generation/kv_cache.h"
#include "generation/sampler.h"
#include "generation/tda.h"
#include "generation/tda_sweep.h"
#include "model/gpt.h"

namespace keel {
namespace {

ModelConfig small(const std::string& attention, const std::string& activation = "gelu") {
  ModelConfig c;
  c.vocab_size = 53;
  c.context_length = 40;
  c.num_layers = 2;
  c.num_heads = 2;
  c.d_model = 32;
  c.attention = attention;
  c.activation = activation;
  return c;
}

// A model whose weights are far from the tiny init, so logits differ clearly between tokens.
Gpt random_model(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  Gpt model(config);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.3);
  model->eval();
  return model;
}

const std::vector<int64_t> kPrompt = {3, 17, 5, 42, 8, 1, 29};

class CachedDecoding : public ::testing::TestWithParam<std::string> {};

TEST_P(CachedDecoding, EqualsFullRecomputationTokenByToken) {
  Gpt model = random_model(small(GetParam()), 21);
  GenerationOptions options;
  options.max_new_tokens = 25;
  options.sampler.greedy = true;
  std::vector<torch::Tensor> cached_logits, full_logits;
  auto cached = generate(model, kPrompt, options, &cached_logits);
  auto full = generate_by_recomputation(model, kPrompt, options, &full_logits);
  ASSERT_EQ(cached.tokens.size(), 25u);
  EXPECT_EQ(cached.tokens, full.tokens);
  ASSERT_EQ(cached_logits.size(), full_logits.size());
  for (size_t i = 0; i < cached_logits.size(); ++i)
    EXPECT_TRUE(torch::allclose(cached_logits[i], full_logits[i], 1e-4, 1e-4))
        << "step " << i << ": " << (cached_logits[i] - full_logits[i]).abs().max().item<double>();
  EXPECT_EQ(cached.decode_steps, 24);
}

TEST_P(CachedDecoding, SamplingWithASeedRepeatsAndMatchesRecomputation) {
  Gpt model = random_model(small(GetParam()), 22);
  GenerationOptions options;
  options.max_new_tokens = 20;
  options.sampler.temperature = 0.9;
  options.sampler.top_k = 20;
  options.sampler.top_p = 0.9;
  options.sampler.seed = 7;
  auto a = generate(model, kPrompt, options);
  auto b = generate(model, kPrompt, options);
  auto full = generate_by_recomputation(model, kPrompt, options);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.tokens, full.tokens);
  options.sampler.seed = 8;
  EXPECT_NE(generate(model, kPrompt, options).tokens, a.tokens);
}

TEST_P(CachedDecoding, StopsAtEosAndAtTheContextLength) {
  Gpt model = random_model(small(GetParam()), 23);
  GenerationOptions options;
  options.sampler.greedy = true;
  options.max_new_tokens = 1000;
  auto all = generate(model, kPrompt, options);
  EXPECT_EQ(all.tokens.size(), 40u - kPrompt.size());  // capped by model.context_length
  options.eos_id = all.tokens[4];
  auto stopped = generate(model, kPrompt, options);
  ASSERT_LE(stopped.tokens.size(), 5u);
  EXPECT_EQ(stopped.tokens.back(), options.eos_id);
}

TEST_P(CachedDecoding, PromptedLossEqualsTheFullForwardLoss) {
  // Prefill, then the rest in one cached chunk (masked attention over the cache) == one forward.
  Gpt model = random_model(small(GetParam()), 24);
  std::vector<int64_t> sequence;
  for (int64_t i = 0; i < 30; ++i) sequence.push_back((i * 7 + 3) % 53);
  const double full = continuation_loss(model, sequence, 11);
  const auto [cached, sparsity] = prompted_loss(model, sequence, 11, TdaOptions{});
  EXPECT_NEAR(cached, full, 1e-5);
  EXPECT_EQ(sparsity, 0.0);
  // Independent: cross-entropy from a plain forward, computed by hand.
  auto ids = torch::tensor(sequence, torch::kLong).view({1, 30});
  auto logits = model->forward(ids.narrow(1, 0, 29))[0];
  double sum = 0;
  for (int64_t t = 10; t < 29; ++t)
    sum += -torch::log_softmax(logits[t], 0)[sequence[t + 1]].item<double>();
  EXPECT_NEAR(full, sum / 19.0, 1e-5);
}

TEST_P(CachedDecoding, TdaThresholdZeroIsDenseExactly) {
  Gpt model = random_model(small(GetParam(), "relu"), 25);
  GenerationOptions dense;
  dense.max_new_tokens = 20;
  dense.sampler.greedy = true;
  GenerationOptions tda = dense;
  tda.tda.threshold = 0.0;
  std::vector<torch::Tensor> dense_logits, tda_logits;
  auto a = generate(model, kPrompt, dense, &dense_logits);
  auto b = generate(model, kPrompt, tda, &tda_logits);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(b.tda_sparsity, 0.0);
  for (size_t i = 0; i < a.tokens.size(); ++i) EXPECT_TRUE(torch::equal(dense_logits[i], tda_logits[i])) << i;
  // A positive threshold drops neurons and still generates.
  tda.tda.threshold = 1.0;
  auto c = generate(model, kPrompt, tda);
  EXPECT_GT(c.tda_sparsity, 0.1);
  EXPECT_EQ(c.tokens.size(), 20u);
}

INSTANTIATE_TEST_SUITE_P(Attention, CachedDecoding, ::testing::Values("softmax", "linear"));

TEST(KvCache, LinearStateDoesNotGrowButTheKvCacheDoes) {
  GenerationOptions options;
  options.sampler.greedy = true;
  options.max_new_tokens = 10;
  Gpt softmax = random_model(small("softmax"), 1), linear = random_model(small("linear"), 1);
  auto s10 = generate(softmax, kPrompt, options), l10 = generate(linear, kPrompt, options);
  options.max_new_tokens = 30;
  auto s30 = generate(softmax, kPrompt, options), l30 = generate(linear, kPrompt, options);
  // KV cache: L x 2 x (B, H, T, D) fp32; linear: L x (B, H, D, D) fp32.
  EXPECT_EQ(s10.cache_bytes, 2 * 2 * 1 * 2 * (7 + 10) * 16 * 4);
  EXPECT_EQ(s30.cache_bytes, 2 * 2 * 1 * 2 * (7 + 30) * 16 * 4);
  EXPECT_EQ(l10.cache_bytes, 2 * 1 * 2 * 16 * 16 * 4);
  EXPECT_EQ(l30.cache_bytes, l10.cache_bytes);
}

TEST(Sampler, FiltersMatchHandComputedDistributions) {
  auto logits = torch::log(torch::tensor({0.1, 0.4, 0.2, 0.3}, torch::kFloat));
  SamplerOptions o;
  o.top_k = 2;
  auto p = Sampler(o).distribution(logits);
  EXPECT_NEAR(p[1].item<double>(), 0.4 / 0.7, 1e-6);
  EXPECT_NEAR(p[3].item<double>(), 0.3 / 0.7, 1e-6);
  EXPECT_EQ(p[0].item<double>(), 0.0);
  EXPECT_EQ(p[2].item<double>(), 0.0);
  o.top_k = 0;
  o.top_p = 0.75;  // 0.4 + 0.3 = 0.7 < 0.75: the nucleus needs 0.2 as well
  p = Sampler(o).distribution(logits);
  EXPECT_EQ(p[0].item<double>(), 0.0);
  EXPECT_NEAR(p[2].item<double>(), 0.2 / 0.9, 1e-6);
  o.top_p = 1.0;
  o.temperature = 0.5;  // p^(1/T) renormalised
  p = Sampler(o).distribution(logits);
  EXPECT_NEAR(p[1].item<double>(), 0.16 / (0.01 + 0.16 + 0.04 + 0.09), 1e-6);
  o.temperature = 0.0;
  EXPECT_EQ(Sampler(o).next(logits), 1);
  // Sampling frequencies follow the filtered distribution.
  o.temperature = 1.0;
  o.top_k = 2;
  Sampler sampler(o);
  int ones = 0;
  for (int i = 0; i < 4000; ++i) ones += sampler.next(logits) == 1;
  EXPECT_NEAR(ones / 4000.0, 0.4 / 0.7, 0.03);
}

TEST(Tda, SelectionByThresholdAndBySparsity) {
  // Activations of 4 neurons over 2 tokens; norms 5, 0, 1, sqrt(2); mean (6 + sqrt 2) / 4 = 1.854.
  auto a = torch::tensor({3.0f, 0.0f, 1.0f, 1.0f, 4.0f, 0.0f, 0.0f, 1.0f}).view({1, 2, 4});
  auto scores = tda_neuron_scores(a);
  EXPECT_NEAR(scores[0].item<double>(), 5.0, 1e-6);
  EXPECT_NEAR(scores[3].item<double>(), std::sqrt(2.0), 1e-6);
  TdaOptions t;
  t.threshold = 0.7;  // keep >= 1.298: neurons 0 and 3
  EXPECT_TRUE(torch::equal(tda_select(scores, t), torch::tensor({0, 3}, torch::kLong)));
  t.threshold = 0.0;
  EXPECT_EQ(tda_select(scores, t).size(0), 4);
  TdaOptions s;
  s.sparsity = 0.5;  // the two best: 0 and 3
  EXPECT_TRUE(torch::equal(tda_select(scores, s), torch::tensor({0, 3}, torch::kLong)));
}

class SlicedMlpTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SlicedMlpTest, EqualsTheMaskedDenseMlp) {
  torch::manual_seed(31);
  ModelConfig c = small("softmax", GetParam());
  Mlp mlp(c);
  const int64_t hidden = c.mlp_hidden_width();
  auto keep = std::get<0>(torch::randperm(hidden).narrow(0, 0, hidden / 3).sort());
  auto x = torch::randn({2, 5, c.d_model});
  SlicedMlp sliced(mlp, GetParam(), keep);
  auto expected = masked_dense_mlp(mlp, GetParam(), x, keep);
  auto got = sliced(x);
  EXPECT_EQ(sliced.kept(), hidden / 3);
  EXPECT_TRUE(torch::allclose(got, expected, 1e-5, 1e-5)) << (got - expected).abs().max().item<double>();
  // Independent check of the mask itself: zeroing the dropped neurons by hand.
  torch::Tensor h;
  auto dense = mlp->forward(x, &h);
  auto dropped = torch::ones({hidden}, torch::kBool);
  dropped.index_put_({keep}, false);
  auto by_hand = dense - torch::nn::functional::linear(h.index({"...", dropped}),
                                                       mlp->c_proj->weight.index({torch::indexing::Slice(), dropped}));
  EXPECT_TRUE(torch::allclose(got, by_hand, 1e-5, 1e-5)) << (got - by_hand).abs().max().item<double>();
}

INSTANTIATE_TEST_SUITE_P(Activations, SlicedMlpTest, ::testing::Values("gelu", "relu", "swiglu"));

TEST(TdaSweep, ThresholdZeroRowEqualsTheDenseReference) {
  Gpt model = random_model(small("softmax"), 11);
  TdaSweepInput input;
  input.prompt = kPrompt;
  input.generation.max_new_tokens = 12;
  input.generation.sampler.temperature = 5.0;  // the sweep decodes greedily whatever the sampler says
  input.thresholds = {0.0, 1.0};
  input.validation_windows = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {11, 12, 13, 14, 15, 16, 17, 18, 19, 20}};
  input.mask_prompt_length = 5;
  std::vector<std::string> seen;
  const auto rows = run_tda_sweep(model, input, [&](const TdaSweepRow& row) {
    seen.push_back(row.threshold ? std::to_string(*row.threshold) : "dense");
  });
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(seen, (std::vector<std::string>{"dense", std::to_string(0.0), std::to_string(1.0)}));
  const TdaSweepRow &dense = rows[0], &zero = rows[1], &one = rows[2];
  GenerationOptions greedy = input.generation;
  greedy.sampler.greedy = true;
  EXPECT_EQ(dense.result.tokens, generate(model, kPrompt, greedy).tokens);
  EXPECT_EQ(dense.first_divergence, 12);
  EXPECT_EQ(zero.result.tokens, dense.result.tokens);
  EXPECT_EQ(zero.agreement, 1.0);
  EXPECT_EQ(zero.first_divergence, 12);
  EXPECT_EQ(zero.sparsity, 0.0);
  EXPECT_NEAR(zero.dense_loss_on_text, dense.dense_loss_on_text, 1e-9);
  EXPECT_NEAR(zero.val_loss_masked, dense.val_loss_masked, 1e-4);
  EXPECT_GT(one.sparsity, 0.1);
  EXPECT_TRUE(std::isfinite(one.val_loss_masked));
  // The JSON rows: the dense one names no threshold and has no per-layer sparsity.
  EXPECT_TRUE(dense.to_json()["threshold"].is_null());
  EXPECT_FALSE(dense.to_json().contains("layer_sparsity"));
  EXPECT_EQ(one.to_json()["threshold"], 1.0);
  EXPECT_EQ(one.to_json()["layer_sparsity"].size(), 2u);
  EXPECT_EQ(one.to_json()["new_tokens"], 12);
}

}  // namespace
}  // namespace keel
