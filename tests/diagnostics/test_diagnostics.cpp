// Diagnostics: attention entropy, layer linearity and activation sparsity against hand-made cases
// and scalar-loop computations; compute_diagnostics on a tiny GPT leaves RNG, parameters and the
// training flag untouched.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "common/config.h"
#include "diagnostics/activation_sparsity.h"
#include "diagnostics/attention_entropy.h"
#include "diagnostics/layer_linearity.h"
#include "diagnostics/model_diagnostics.h"
#include "diagnostics/spike_conditions.h"
#include "model/gpt.h"

namespace keel {
namespace {

using diagnostics::activation_sparsity;
using diagnostics::attention_entropy;
using diagnostics::entropy_overload_fraction;
using diagnostics::linearity_score;
using diagnostics::linearity_score_without_residual;

// (B, H, T, T): row i uniform over j <= i.
torch::Tensor uniform_causal(int64_t B, int64_t H, int64_t T) {
  auto p = torch::zeros({B, H, T, T}, torch::kDouble);
  for (int64_t i = 0; i < T; ++i) p.select(2, i).slice(2, 0, i + 1).fill_(1.0 / static_cast<double>(i + 1));
  return p;
}

TEST(AttentionEntropy, UniformRowsHaveNormalisedEntropyOne) {
  const int64_t T = 6;
  auto e = attention_entropy(uniform_causal(2, 3, T));
  double expected = 0;  // mean over rows of log(i+1)
  for (int64_t i = 0; i < T; ++i) expected += std::log(static_cast<double>(i + 1)) / T;
  ASSERT_EQ(e.entropy.size(), 3u);
  for (int h = 0; h < 3; ++h) {
    EXPECT_NEAR(e.normalised_entropy[h], 1.0, 1e-12);
    EXPECT_NEAR(e.entropy[h], expected, 1e-12);
  }
}

TEST(AttentionEntropy, OneHotRowsHaveZeroEntropy) {
  const int64_t T = 5;
  auto p = torch::zeros({1, 2, T, T});
  for (int64_t i = 0; i < T; ++i) {
    p[0][0][i][0] = 1.0;  // head 0 attends to the first token
    p[0][1][i][i] = 1.0;  // head 1 attends to itself
  }
  auto e = attention_entropy(p);
  for (int h = 0; h < 2; ++h) {
    EXPECT_NEAR(e.entropy[h], 0.0, 1e-12);
    EXPECT_NEAR(e.normalised_entropy[h], 0.0, 1e-12);
  }
}

TEST(AttentionEntropy, MatchesScalarLoopOnRandomCausalProbabilities) {
  torch::manual_seed(3);
  const int64_t B = 2, H = 3, T = 7;
  auto mask = torch::ones({T, T}, torch::kBool).triu(1);
  auto p = torch::softmax(torch::randn({B, H, T, T}).masked_fill(mask, -INFINITY), -1);
  auto e = attention_entropy(p);
  auto pa = p.to(torch::kDouble).contiguous();
  auto a = pa.accessor<double, 4>();
  for (int64_t h = 0; h < H; ++h) {
    double sum = 0, sum_normalised = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < T; ++i) {
        double row = 0;
        for (int64_t j = 0; j <= i; ++j)
          if (a[b][h][i][j] > 0) row -= a[b][h][i][j] * std::log(a[b][h][i][j]);
        sum += row;
        if (i > 0) sum_normalised += row / std::log(static_cast<double>(i + 1));
      }
    EXPECT_NEAR(e.entropy[h], sum / (B * T), 1e-6);
    EXPECT_NEAR(e.normalised_entropy[h], sum_normalised / (B * (T - 1)), 1e-6);
  }
}

TEST(AttentionEntropy, OverloadFractionCountsHeadsAboveThreshold) {
  diagnostics::HeadEntropy a{{0, 0}, {0.95, 0.2}}, b{{0, 0}, {0.91, 0.99}};
  EXPECT_DOUBLE_EQ(entropy_overload_fraction({a, b}, 0.9), 0.75);
  EXPECT_DOUBLE_EQ(entropy_overload_fraction({a, b}, 0.99), 0.0);
  EXPECT_DOUBLE_EQ(entropy_overload_fraction({}, 0.9), 0.0);
}

// Issue 27 item 5: the Spike No More line states its verdict, for both outcomes.
TEST(SpikeConditions, LinesSayWhetherTheConditionHolds) {
  keel::SpikeConditionReport report;
  report.embedding_output_std = 0.0282;
  EXPECT_EQ(report.lines().front(), "embedding output std 0.0282: far below 1, the condition does not hold");
  report.embedding_output_std = 0.9981;
  EXPECT_EQ(report.lines().front(), "embedding output std 0.9981: near 1, the condition holds");
  report.embedding_output_std = 8.0;
  EXPECT_EQ(report.lines().front(), "embedding output std 8.0000: far above 1, the condition does not hold");
  report.norm = "none";
  report.embedding_output_std = 0.0282;
  EXPECT_NE(report.lines().front().find("far below 1, the condition is stated for pre-LN"), std::string::npos);
}

// The least-squares fit is exact once the centred tokens span no more directions than the width.
TEST(Linearity, FewerTokensThanTheWidthFitExactlyAndAreFlagged) {
  torch::manual_seed(0);
  const auto x = torch::randn({9, 16}, torch::kDouble), y = torch::randn({9, 16}, torch::kDouble);
  EXPECT_TRUE(keel::diagnostics::linearity_fit_is_exact(9, 16));
  EXPECT_NEAR(keel::diagnostics::linearity_score(x, y), 1.0, 1e-9) << "unrelated data, exact fit";
  EXPECT_TRUE(keel::diagnostics::linearity_fit_is_exact(17, 16));
  EXPECT_FALSE(keel::diagnostics::linearity_fit_is_exact(18, 16));
  const auto x2 = torch::randn({200, 16}, torch::kDouble), y2 = torch::randn({200, 16}, torch::kDouble);
  EXPECT_LT(keel::diagnostics::linearity_score(x2, y2), 0.5);
}

TEST(Linearity, ExactLinearAndAffineMapsScoreOne) {
  torch::manual_seed(4);
  auto x = torch::randn({256, 8}, torch::kDouble);
  auto m = torch::randn({8, 12}, torch::kDouble);
  EXPECT_NEAR(linearity_score(x, torch::matmul(x, m)), 1.0, 1e-6);
  EXPECT_NEAR(linearity_score(x, torch::matmul(x, m) + 3.0), 1.0, 1e-6);  // centring removes offsets
  // Leading dims are flattened to tokens; float inputs work too.
  auto x3 = torch::randn({4, 16, 8});
  EXPECT_NEAR(linearity_score(x3, torch::matmul(x3, m.to(torch::kFloat))), 1.0, 1e-6);
}

TEST(Linearity, NonLinearMapsScoreWellBelowOneAndScoreIsScaleInvariant) {
  torch::manual_seed(5);
  auto x = torch::randn({512, 8}, torch::kDouble);
  auto y = torch::sin(20 * x);
  const double s = linearity_score(x, y);
  EXPECT_LT(s, 0.2);
  EXPECT_GE(s, 0.0);
  auto signs = torch::randint(0, 2, {512, 8}).to(torch::kDouble) * 2 - 1;
  EXPECT_LT(linearity_score(x, signs * x.pow(2)), 0.2);
  EXPECT_NEAR(linearity_score(7.5 * x, 0.01 * y), s, 1e-9);
  EXPECT_NEAR(linearity_score(0.1 * x, y), s, 1e-9);
}

// Against an independent computation (the Moore-Penrose pseudo-inverse fit, in float64), on random
// data with more tokens than features and with fewer (rank-deficient after centring).
TEST(Linearity, MatchesThePseudoInverseFit) {
  torch::manual_seed(7);
  for (const auto& [tokens, features] : std::vector<std::pair<int64_t, int64_t>>{{200, 16}, {12, 32}}) {
    auto x = torch::randn({tokens, features});
    auto y = torch::tanh(x.matmul(torch::randn({features, features}))) + 0.3 * torch::randn({tokens, features});
    auto unit = [](const torch::Tensor& t) {
      auto m = t.to(torch::kDouble) - t.to(torch::kDouble).mean(0, true);
      return m / m.norm();
    };
    auto X = unit(x), Y = unit(y);
    auto fit = torch::matmul(X, torch::matmul(torch::linalg_pinv(X), Y));
    const double expected = 1.0 - (fit - Y).pow(2).sum().item<double>();
    EXPECT_NEAR(diagnostics::linearity_score(x, y), expected, 1e-9) << tokens << " x " << features;
  }
}

// The batched form the diagnostics pass uses (one eigendecomposition call for all layers) gives
// every layer's two scores as the one-layer functions do, including a constant and a zero layer.
TEST(Linearity, BatchedOverLayersEqualsLayerByLayer) {
  torch::manual_seed(8);
  std::vector<torch::Tensor> xs, ys;
  for (int l = 0; l < 4; ++l) {
    auto x = torch::randn({2, 40, 16});
    xs.push_back(x);
    ys.push_back(x + torch::tanh(x.matmul(torch::randn({16, 16}))) * (0.2 * l));
  }
  ys[2] = torch::full({2, 40, 16}, 3.0);  // constant output: trivially linear
  xs[3] = torch::zeros({2, 40, 16});       // zero input: explains nothing
  const auto batched = diagnostics::linearity_scores(xs, ys).to(torch::kCPU);
  ASSERT_EQ(batched.sizes(), (std::vector<int64_t>{4, 2}));
  for (int l = 0; l < 4; ++l) {
    EXPECT_NEAR(batched[l][0].item<double>(), linearity_score(xs[l], ys[l]), 1e-12) << "layer " << l;
    EXPECT_NEAR(batched[l][1].item<double>(), linearity_score_without_residual(xs[l], ys[l]), 1e-12) << "layer " << l;
  }
  EXPECT_NEAR(batched[2][0].item<double>(), 1.0, 1e-12);
  EXPECT_THROW(diagnostics::linearity_scores({xs[0]}, {}), std::exception);
  EXPECT_THROW(diagnostics::linearity_scores({xs[0], torch::randn({3, 16})}, {ys[0], torch::randn({3, 16})}),
               std::exception);
}

TEST(Linearity, ResidualRemovedVariant) {
  torch::manual_seed(6);
  auto x = torch::randn({300, 8}, torch::kDouble);
  auto m = torch::randn({8, 8}, torch::kDouble);
  EXPECT_NEAR(linearity_score_without_residual(x, x + torch::matmul(x, m)), 1.0, 1e-6);
  // A small non-linear update: the full block looks linear, its contribution does not.
  auto y = x + 0.05 * torch::sin(20 * x);
  EXPECT_GT(linearity_score(x, y), 0.95);
  EXPECT_NEAR(linearity_score_without_residual(x, y), linearity_score(x, 0.05 * torch::sin(20 * x)), 1e-9);
  EXPECT_LT(linearity_score_without_residual(x, y), 0.2);
}

TEST(Sparsity, CountsNearAndExactZeros) {
  auto a = torch::tensor({-2.0, 0.0, 0.0005, -0.0005, 1.0, 0.0, 3.0, 0.002});
  auto s = activation_sparsity(a, 1e-3);
  EXPECT_DOUBLE_EQ(s.below_threshold, 4.0 / 8.0);
  EXPECT_DOUBLE_EQ(s.exactly_zero, 2.0 / 8.0);
}

TEST(Sparsity, ReluMlpOnKnownInputs) {
  // relu(x W^T): x rows (1, 0), (0, 1), (1, 1); W rows (1, -1), (-1, 0), (0, 2)
  auto x = torch::tensor({1.0, 0.0, 0.0, 1.0, 1.0, 1.0}).view({3, 2});
  auto w = torch::tensor({1.0, -1.0, -1.0, 0.0, 0.0, 2.0}).view({3, 2});
  auto h = torch::relu(torch::matmul(x, w.t()));
  // pre-activations: (1, -1, 0), (-1, 0, 2), (0, -1, 2) -> zeros after ReLU: 2 + 2 + 2 = 6 of 9
  auto s = activation_sparsity(h, 1e-3);
  EXPECT_DOUBLE_EQ(s.exactly_zero, 6.0 / 9.0);
  EXPECT_DOUBLE_EQ(s.below_threshold, 6.0 / 9.0);
}

TEST(Sparsity, CountsOfSlicesSumToTheWhole) {
  // Tensor parallelism splits the hidden units across ranks: the summed counts of the slices must
  // give the whole tensor's fractions.
  torch::manual_seed(9);
  auto a = torch::relu(torch::randn({2, 5, 12}));
  a.index_put_({0, 0, 0}, 5e-4);  // near-zero but not zero
  auto left = diagnostics::activation_counts(a.slice(2, 0, 6), 1e-3);
  auto right = diagnostics::activation_counts(a.slice(2, 6, 12), 1e-3);
  diagnostics::ActivationCounts sum{left.total + right.total, left.below_threshold + right.below_threshold,
                                    left.exactly_zero + right.exactly_zero};
  EXPECT_EQ(sum.total, 120);
  int64_t zeros = 0, small = 0;  // scalar loop
  auto flat = a.flatten();
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const float v = flat[i].item<float>();
    zeros += v == 0.0f;
    small += std::abs(v) < 1e-3f;
  }
  EXPECT_EQ(sum.exactly_zero, zeros);
  EXPECT_EQ(sum.below_threshold, small);
  auto whole = activation_sparsity(a, 1e-3);
  EXPECT_DOUBLE_EQ(diagnostics::sparsity_of(sum).below_threshold, whole.below_threshold);
  EXPECT_DOUBLE_EQ(diagnostics::sparsity_of(sum).exactly_zero, whole.exactly_zero);
  EXPECT_DOUBLE_EQ(diagnostics::sparsity_of({}).below_threshold, 0.0);
}

ModelConfig tiny(const std::string& norm = "pre_ln", const std::string& activation = "gelu") {
  ModelConfig c;
  c.vocab_size = 97;
  c.context_length = 16;
  c.num_layers = 2;
  c.num_heads = 2;
  c.d_model = 16;
  c.norm = norm;
  c.activation = activation;
  c.dropout = 0.1;
  return c;
}

TEST(ModelDiagnostics, LeavesRngParametersAndModeUntouched) {
  torch::manual_seed(7);
  Gpt model(tiny());
  model->train();
  auto tokens = torch::randint(0, 97, {4, 12});
  std::vector<torch::Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.detach().clone());
  auto generator = at::globalContext().defaultGenerator(at::kCPU);  // shares the global state
  auto rng_before = generator.get_state();
  auto expected_next = torch::rand({5});  // what the RNG gives without diagnostics
  generator.set_state(rng_before);

  DiagnosticsConfig config;
  auto report = compute_diagnostics(*model, tokens, config);

  EXPECT_TRUE(torch::equal(generator.get_state(), rng_before));
  EXPECT_TRUE(torch::equal(torch::rand({5}), expected_next));
  EXPECT_TRUE(model->is_training());
  auto after = model->parameters();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(after[i], before[i]));

  // Deterministic (eval mode: no dropout).
  auto again = compute_diagnostics(*model, tokens, config);
  EXPECT_EQ(report.flat_metrics(), again.flat_metrics());

  ASSERT_EQ(report.layers.size(), 2u);
  bool has_entropy = false, has_linearity = false, has_sparsity = false;
  for (const auto& [name, value] : report.flat_metrics()) {
    EXPECT_TRUE(std::isfinite(value)) << name;
    EXPECT_EQ(name.rfind("diag.", 0), 0u) << name;
    has_entropy |= name.find("entropy") != std::string::npos;
    has_linearity |= name.find("linearity") != std::string::npos;
    has_sparsity |= name.find("sparsity") != std::string::npos;
  }
  EXPECT_TRUE(has_entropy && has_linearity && has_sparsity);
  auto flat = report.flat_metrics();
  for (const char* key : {"diag.layer1.head1.attention_entropy", "diag.layer1.linearity", "diag.layer0.mlp_sparsity",
                          "diag.attention_entropy_overload_fraction", "diag.embedding_output_std"})
    EXPECT_EQ(flat.count(key), 1u) << key;
  for (const auto& l : report.layers)
    for (double e : l.attention_normalised_entropy) {
      EXPECT_GE(e, 0.0);
      EXPECT_LE(e, 1.0 + 1e-9);
    }
  auto json = report.to_json();
  EXPECT_EQ(json["layers"].size(), 2u);
  EXPECT_EQ(json["layers"][0]["attention_entropy"].size(), 2u);
}

TEST(ModelDiagnostics, EntropyMatchesDirectAttentionProbabilitiesNormFreeRelu) {
  torch::manual_seed(8);
  Gpt model(tiny("none", "relu"));
  model->eval();
  auto tokens = torch::randint(0, 97, {2, 10});
  auto report = compute_diagnostics(*model, tokens, DiagnosticsConfig{});
  torch::NoGradGuard no_grad;
  auto x = model->embed(tokens);  // norm-free: attention sees the block input itself
  auto probs = model->blocks[0]->as<BlockImpl>()->attn->attention_probabilities(x);
  auto direct = attention_entropy(probs);
  for (size_t h = 0; h < direct.entropy.size(); ++h)
    EXPECT_NEAR(report.layers[0].attention_entropy[h], direct.entropy[h], 1e-9);
  EXPECT_FALSE(model->is_training());
  for (const auto& l : report.layers) {
    EXPECT_GT(l.mlp_exactly_zero, 0.0);  // ReLU gives exact zeros
    EXPECT_GE(l.mlp_sparsity, l.mlp_exactly_zero);
  }
}

TEST(DiagnosticsConfigTest, ValidateRejectsBadValues) {
  DiagnosticsConfig c;
  EXPECT_NO_THROW(c.validate());
  c.every = 0;  // off is valid
  EXPECT_NO_THROW(c.validate());
  c.every = -1;
  EXPECT_THROW(c.validate(), ConfigError);
  c = DiagnosticsConfig{};
  c.entropy_overload_threshold = 1.5;
  EXPECT_THROW(c.validate(), ConfigError);
  c = DiagnosticsConfig{};
  c.probe_batch_size = 0;
  EXPECT_THROW(c.validate(), ConfigError);
}

}  // namespace
}  // namespace keel
