// The modern recipe knobs (model.norm=rms, model.qk_norm, model.position=rope, train.z_loss) against
// an independent float64 python3-torch implementation written from the papers (recipe_reference.py):
// the loss terms and every parameter's gradient of cross-entropy + z_loss x z. Also: causality and
// the KV-cache decode with rotary positions, names and init of the new parameters.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/fs.h"
#include "model/gpt.h"

namespace keel {
namespace {

struct Knobs {
  std::string name, norm, qk_norm, position, activation;
  bool tie, bias;
};

void PrintTo(const Knobs& knobs, std::ostream* os) { *os << knobs.name; }

ModelConfig config_of(const Knobs& k) {
  ModelConfig c;
  c.vocab_size = 61;
  c.context_length = 12;
  c.num_layers = 2;
  c.num_heads = 2;
  c.d_model = 16;
  c.norm = k.norm;
  c.qk_norm = k.qk_norm;
  c.position = k.position;
  c.activation = k.activation;
  c.tie_embeddings = k.tie;
  c.bias = k.bias;
  return c;
}

std::string scratch(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/keel_knobs_" + name;
  fs::remove_all(dir);
  fs::make_dirs(dir);
  return dir;
}

// A KV cache that concatenates (the test's own; generation/kv_cache.h preallocates).
class ConcatCache : public AttentionCache {
 public:
  std::pair<torch::Tensor, torch::Tensor> append(const torch::Tensor& k, const torch::Tensor& v) override {
    keys_ = keys_.defined() ? torch::cat({keys_, k}, 2) : k;
    values_ = values_.defined() ? torch::cat({values_, v}, 2) : v;
    return {keys_, values_};
  }
  torch::Tensor& linear_state() override { return state_; }

 private:
  torch::Tensor keys_, values_, state_;
};

class RecipeKnobs : public ::testing::TestWithParam<Knobs> {};

TEST_P(RecipeKnobs, LossTermsAndGradientsMatchAnIndependentFloat64Reference) {
  const Knobs knobs = GetParam();
  torch::manual_seed(7);
  Gpt model(config_of(knobs));
  model->to(torch::kDouble);
  {
    // Norm weights start at one; perturb every parameter so the reference sees non-trivial ones.
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.05);
  }
  const auto idx = torch::randint(0, 61, {3, 12}, torch::kLong);
  const auto targets = torch::randint(0, 61, {3, 12}, torch::kLong);
  const double z_coefficient = 0.01;
  const LmLossTerms terms = model->loss_terms(idx, targets, /*want_z=*/true);
  (terms.cross_entropy + z_coefficient * terms.z).backward();

  const std::string dir = scratch(knobs.name);
  nlohmann::json cfg = {{"model",
                         {{"d_model", 16}, {"num_heads", 2}, {"num_layers", 2}, {"norm", knobs.norm},
                          {"qk_norm", knobs.qk_norm}, {"position", knobs.position}, {"activation", knobs.activation}}},
                        {"z_loss", z_coefficient}};
  cfg["tokens"] = std::vector<std::vector<int64_t>>();
  cfg["targets"] = std::vector<std::vector<int64_t>>();
  for (int64_t b = 0; b < 3; ++b) {
    std::vector<int64_t> row(idx[b].data_ptr<int64_t>(), idx[b].data_ptr<int64_t>() + 12);
    std::vector<int64_t> trow(targets[b].data_ptr<int64_t>(), targets[b].data_ptr<int64_t>() + 12);
    cfg["tokens"].push_back(row);
    cfg["targets"].push_back(trow);
  }
  for (const auto& item : model->named_parameters()) {
    const auto t = item.value().detach().contiguous();
    cfg["parameters"][item.key()] = t.sizes().vec();
    std::ofstream(dir + "/" + item.key() + ".bin", std::ios::binary)
        .write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * sizeof(double)));
  }
  std::ofstream(dir + "/config.json") << cfg.dump();
  const std::string command =
      "/usr/bin/python3 " + std::string(KEEL_SOURCE_DIR) + "/tests/model/recipe_reference.py " + dir + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const auto reference = nlohmann::json::parse(fs::read_file(dir + "/reference.json"));

  // Keel keeps some work in fp32 by design even for a float64 model (the loss's logits, RMSNorm's
  // statistics, the rotary angles), so agreement is to fp32 precision, far below what a wrong
  // formula (a sign in the rotation, a missing norm: differences ~1e-2) gives.
  EXPECT_NEAR(terms.cross_entropy.item<double>(), reference["cross_entropy"].get<double>(), 2e-6);
  EXPECT_NEAR(terms.z.item<double>(), reference["z"].get<double>(), 1e-5);
  double worst = 0;
  size_t compared = 0;
  for (const auto& item : model->named_parameters()) {
    ASSERT_TRUE(reference["grads"].contains(item.key())) << item.key();
    const auto expected = reference["grads"][item.key()].get<std::vector<double>>();
    const auto grad = item.value().grad().contiguous();
    ASSERT_EQ(static_cast<size_t>(grad.numel()), expected.size()) << item.key();
    for (size_t i = 0; i < expected.size(); ++i)
      worst = std::max(worst, std::abs(grad.data_ptr<double>()[i] - expected[i]));
    ++compared;
  }
  EXPECT_EQ(compared, reference["grads"].size());
  EXPECT_LT(worst, 1e-6) << "largest gradient difference";
  std::printf("%s: cross-entropy %.6f z %.4f, %zu parameters, largest gradient difference %.2e\n", knobs.name.c_str(),
              terms.cross_entropy.item<double>(), terms.z.item<double>(), compared, worst);
}

TEST_P(RecipeKnobs, CausalAndTheIncrementalDecodeMatchesTheFullForward) {
  torch::manual_seed(3);
  Gpt model(config_of(GetParam()));
  model->eval();
  torch::NoGradGuard no_grad;
  const auto idx = torch::randint(0, 61, {2, 10}, torch::kLong);
  const auto full = model->forward(idx);  // (2, 10, V)
  auto changed = idx.clone();
  changed.index_put_({torch::indexing::Slice(), 9}, (idx.index({torch::indexing::Slice(), 9}) + 1) % 61);
  EXPECT_TRUE(torch::allclose(model->forward(changed).narrow(1, 0, 9), full.narrow(1, 0, 9), 1e-6, 1e-6));
  // Positions one at a time through the caches (the rotation of each cached key is its own).
  std::vector<ConcatCache> caches(2);
  DecodeHooks hooks;
  for (auto& c : caches) hooks.caches.push_back(&c);
  for (int64_t t = 0; t < 10; ++t) {
    const auto step = model->forward_cached(idx.narrow(1, t, 1), t, hooks);  // (2, 1, V)
    EXPECT_TRUE(torch::allclose(step.squeeze(1), full.select(1, t), 1e-5, 1e-5)) << "position " << t;
  }
}

TEST(RecipeKnobsShape, NewParametersAreNamedReplicatedAndNotDecayed) {
  ModelConfig c = config_of({"x", "rms", "layernorm", "rope", "gelu", true, true});
  Gpt model(c);
  std::set<std::string> names;
  for (const auto& item : model->named_parameters()) names.insert(item.key());
  EXPECT_TRUE(names.count("blocks.0.attn.q_norm.weight"));
  EXPECT_TRUE(names.count("blocks.0.attn.k_norm.bias"));  // qk_norm=layernorm keeps a bias
  EXPECT_TRUE(names.count("blocks.1.ln_1.weight"));
  EXPECT_FALSE(names.count("blocks.1.ln_1.bias")) << "RMSNorm has no bias";
  EXPECT_FALSE(names.count("wpe.weight")) << "rotary positions need no table";
  EXPECT_EQ(shard_kind("blocks.0.attn.q_norm.weight"), ShardKind::kReplicated);
  EXPECT_FALSE(model->decays("blocks.0.attn.q_norm.weight"));
  EXPECT_FALSE(model->decays("blocks.0.ln_1.weight"));
  EXPECT_TRUE(model->decays("blocks.0.attn.c_attn.weight"));
  EXPECT_TRUE(torch::equal(model->blocks[0]->as<Block>()->attn->q_norm->weight, torch::ones({8})));
  // Invalid combinations are config errors naming the keys.
  ModelConfig odd = c;
  odd.d_model = 18;  // head dim 9
  EXPECT_THROW(odd.validate(), ConfigError);
  ModelConfig linear = c;
  linear.attention = "linear";
  try {
    linear.validate();
    ADD_FAILURE() << "linear attention with rope accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.position=learned"), std::string::npos) << e.what();
  }
}

// The largest attention logit the diagnostics report: the max of q.k/sqrt(D) over causal positions,
// computed here from c_attn's own output; QK-norm (RMS, unit weights) bounds it by sqrt(D) however
// large the projections grow, plain attention does not.
TEST(RecipeKnobsShape, MaxAttentionLogitIsTheLargestScoreAndQkNormBoundsIt) {
  torch::NoGradGuard no_grad;
  for (const std::string qk : {"none", "rms"}) {
    ModelConfig c = config_of({"x", "pre_ln", qk, "learned", "gelu", true, true});
    torch::manual_seed(5);
    Gpt model(c);
    auto attn = model->blocks[0]->as<Block>()->attn;
    attn->c_attn->weight.mul_(40.0);  // projections grown far beyond init
    const auto x = torch::randn({2, 12, 16});
    torch::Tensor max_logit;
    attn->attention_probabilities(x, &max_logit);
    const int64_t D = 8;
    auto qkv = attn->c_attn(x).split(16, 2);
    auto q = qkv[0].view({2, 12, 2, D}).transpose(1, 2), k = qkv[1].view({2, 12, 2, D}).transpose(1, 2);
    if (qk == "rms") {
      q = q * torch::rsqrt(q.pow(2).mean(-1, true) + 1e-6);
      k = k * torch::rsqrt(k.pow(2).mean(-1, true) + 1e-6);
    }
    const auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(8.0);  // (B, H, T, T)
    const auto causal = torch::ones({12, 12}, torch::kBool).tril();
    const double expected = scores.masked_select(causal.expand_as(scores)).max().item<double>();
    EXPECT_NEAR(max_logit.item<double>(), expected, 1e-4 * std::abs(expected)) << qk;
    if (qk == "rms") {
      EXPECT_LE(max_logit.item<double>(), std::sqrt(8.0) + 1e-4);
    } else {
      EXPECT_GT(max_logit.item<double>(), 10.0 * std::sqrt(8.0)) << "grown projections, no bound";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Knobs, RecipeKnobs,
    ::testing::Values(Knobs{"rms_rope_qkrms", "rms", "rms", "rope", "gelu", true, true},
                      Knobs{"ln_qkln_swiglu_untied", "pre_ln", "layernorm", "learned", "swiglu", false, false},
                      Knobs{"rms_rope_relu_nobias", "rms", "none", "rope", "relu", true, false}),
    [](const ::testing::TestParamInfo<Knobs>& info) { return info.param.name; });

}  // namespace
}  // namespace keel
