// The Spike No More remedy recipe: the overrides computed for a parent config and the monitor's LR
// scale against hand-computed values, and that they survive the `--set` parser (common/config.h)
// byte for byte and bit for bit, as the launcher applies them.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/config.h"
#include "stability/remedy_recipe.h"
#include "stability/stability_config.h"

namespace keel {
namespace {

// Stand-ins for the run config's sections with the keys the recipe sets (stability/ does not see
// model/ or worker/); the choices are the model config's.
struct ModelKeys {
  std::string embed_scale = "1";
  std::string init = "normal_0.02";
  std::string norm = "none";
  void visit(ConfigVisitor& v) {
    v.choice("embed_scale", embed_scale, {"1", "sqrt_d"}, "");
    v.choice("init", init, {"normal_0.02", "small"}, "");
    v.choice("norm", norm, {"pre_ln", "rms", "none"}, "");
  }
};
struct TrainKeys {
  double lr = 0;
  void visit(ConfigVisitor& v) { v.field("lr", lr, ""); }
};
struct RunKeys {
  std::string recipe;
  void visit(ConfigVisitor& v) { v.field("recipe", recipe, ""); }
};

struct ChildConfig {
  ModelKeys model;
  TrainKeys train;
  StabilityConfig stability;
  RunKeys run;
  std::vector<ConfigSectionRef> sections() {
    return {{"model", [this](ConfigVisitor& v) { model.visit(v); }},
            {"train", [this](ConfigVisitor& v) { train.visit(v); }},
            {"stability", [this](ConfigVisitor& v) { stability.visit(v); }},
            {"run", [this](ConfigVisitor& v) { run.visit(v); }}};
  }
  // The parent's config with the recipe applied through the --set mechanism.
  static ChildConfig from(const RemedyRecipe& recipe) {
    ChildConfig child;
    child.stability.on_repeated_spikes = "remedy_restart";
    const auto refs = child.sections();
    for (const auto& assignment : recipe.overrides()) apply_override(refs, assignment);
    return child;
  }
};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(RemedyRecipe, HalvedLrOfASimpleRecipe) {
  const RemedyRecipe r = remedy_recipe("tiny_spiky", 1e-3, 0.5);
  EXPECT_EQ(r.embed_scale, "sqrt_d");
  EXPECT_EQ(r.init, "small");
  EXPECT_EQ(r.parent_lr, 1e-3);
  EXPECT_EQ(r.lr, 0.0005);  // halving is exact in binary
  EXPECT_EQ(r.on_repeated_spikes, "abort");
  EXPECT_EQ(r.recipe, "tiny_spiky+remedy");
  const std::vector<std::string> expected = {"model.embed_scale=\"sqrt_d\"", "model.init=\"small\"",
                                             "train.lr=0.0005", "stability.on_repeated_spikes=\"abort\"",
                                             "run.recipe=\"tiny_spiky+remedy\""};
  EXPECT_EQ(r.overrides(), expected);
}

TEST(RemedyRecipe, UnitScaleKeepsTheParentLr) {
  const RemedyRecipe r = remedy_recipe("gpt_small", 6e-4, 1.0);
  EXPECT_EQ(r.lr, 6e-4);
  EXPECT_EQ(r.overrides().at(2), "train.lr=0.0006");
}

TEST(RemedyRecipe, AppliedThroughSetGivesTheChildConfig) {
  // lr_backoff 0.5 after restart_lr_backoff 0.7: 3e-4 x 0.35 is not a short decimal.
  const double lr_scale = 0.7 * 0.5;
  const RemedyRecipe r = remedy_recipe("gpt_small", 3e-4, lr_scale);
  EXPECT_TRUE(same_bits(r.lr, 3e-4 * lr_scale));
  const ChildConfig child = ChildConfig::from(r);
  EXPECT_EQ(child.model.embed_scale, "sqrt_d");
  EXPECT_EQ(child.model.init, "small");
  EXPECT_TRUE(same_bits(child.train.lr, 3e-4 * lr_scale)) << r.overrides().at(2);
  EXPECT_EQ(child.stability.on_repeated_spikes, "abort");
  EXPECT_EQ(child.run.recipe, "gpt_small+remedy");
}

TEST(RemedyRecipe, LrReadsBackBitForBitOverManyScales) {
  for (double parent_lr : {1e-3, 3e-4, 6e-4, 2.5e-3, 1.234567e-5}) {
    double lr_scale = 1.0;
    for (int restart = 0; restart < 12; ++restart) {
      lr_scale *= restart % 2 ? 0.5 : 0.7;
      const ChildConfig child = ChildConfig::from(remedy_recipe("r", parent_lr, lr_scale));
      EXPECT_TRUE(same_bits(child.train.lr, parent_lr * lr_scale)) << parent_lr << " x " << lr_scale;
    }
  }
}

TEST(RemedyRecipe, ANormFreeParentGetsLayerNorm) {
  const RemedyRecipe r = remedy_recipe("normfree-gelu", 1e-3, 1.0, "none");
  EXPECT_EQ(r.norm, "pre_ln");
  EXPECT_EQ(r.overrides().back(), "model.norm=\"pre_ln\"");
  const ChildConfig child = ChildConfig::from(r);
  EXPECT_EQ(child.model.norm, "pre_ln");
  EXPECT_EQ(child.model.embed_scale, "sqrt_d");
  EXPECT_EQ(child.train.lr, 1e-3);
  // A parent with normalisation keeps its own (no model.norm override).
  for (const char* norm : {"pre_ln", "rms"}) {
    const RemedyRecipe kept = remedy_recipe("vanilla", 1e-3, 0.3, norm);
    EXPECT_TRUE(kept.norm.empty());
    EXPECT_EQ(kept.overrides().size(), 5u);
  }
}

TEST(RemedyRecipe, RecipeNamesWithYamlSyntaxSurviveTheSetParser) {
  for (const std::string parent : {std::string("a: b #c"), std::string("quote\"back\\slash"),
                                   std::string("[list], {map}"), std::string("true"), std::string("tab\there"),
                                   std::string("r\xc3\xa9sum\xc3\xa9")}) {
    const ChildConfig child = ChildConfig::from(remedy_recipe(parent, 1e-3, 0.5));
    EXPECT_EQ(child.run.recipe, parent + "+remedy");
  }
}

}  // namespace
}  // namespace keel
