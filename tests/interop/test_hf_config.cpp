// Unit tests of interop's Torch-free parts: the ModelConfig <-> GPT2Config mapping, the refusals in
// both directions (each names its setting), and the tensor-name table of hf_names.h.
#include <gtest/gtest.h>

#include <set>

#include "common/config.h"
#include "interop/hf_config.h"
#include "interop/hf_names.h"

namespace keel::interop {
namespace {

ModelConfig small() {
  ModelConfig m;
  m.vocab_size = 1024;
  m.context_length = 32;
  m.num_layers = 2;
  m.num_heads = 2;
  m.d_model = 64;
  return m;
}

std::string refusal(const ModelConfig& m) {
  try {
    check_hf_expressible(m);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

std::string import_refusal(nlohmann::json config) {
  try {
    model_config_from_hf(config, "config.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(HfConfig, WritesGpt2ConfigFields) {
  HfConfigExtras extras;
  extras.vocab_size = 1000;
  extras.eos_id = 2;
  const auto c = hf_config_json(small(), extras);
  EXPECT_EQ(c["model_type"], "gpt2");
  EXPECT_EQ(c["architectures"], nlohmann::json({"GPT2LMHeadModel"}));
  EXPECT_EQ(c["vocab_size"], 1000);
  EXPECT_EQ(c["n_positions"], 32);
  EXPECT_EQ(c["n_embd"], 64);
  EXPECT_EQ(c["n_layer"], 2);
  EXPECT_EQ(c["n_head"], 2);
  EXPECT_TRUE(c["n_inner"].is_null());
  EXPECT_EQ(c["activation_function"], "gelu_new");  // Keel's GELU is torch::gelu(x, "tanh")
  EXPECT_DOUBLE_EQ(c["layer_norm_epsilon"].get<double>(), 1e-5);
  EXPECT_EQ(c["tie_word_embeddings"], true);
  EXPECT_EQ(c["bos_token_id"], 2);
  EXPECT_EQ(c["eos_token_id"], 2);
  EXPECT_EQ(hf_generation_config_json(extras)["eos_token_id"], 2);
}

TEST(HfConfig, RoundTripsEveryExpressibleVariant) {
  std::vector<ModelConfig> variants(4, small());
  variants[1].activation = "relu";
  variants[2].tie_embeddings = false;
  variants[2].mlp_hidden = 96;
  variants[3].dropout = 0.1;
  for (const auto& m : variants) {
    HfConfigExtras extras;
    extras.vocab_size = m.vocab_size;
    const ModelConfig back = model_config_from_hf(hf_config_json(m, extras), "config.json");
    EXPECT_EQ(back.vocab_size, m.vocab_size);
    EXPECT_EQ(back.context_length, m.context_length);
    EXPECT_EQ(back.num_layers, m.num_layers);
    EXPECT_EQ(back.num_heads, m.num_heads);
    EXPECT_EQ(back.d_model, m.d_model);
    EXPECT_EQ(back.mlp_hidden_width(), m.mlp_hidden_width());
    EXPECT_EQ(back.activation, m.activation);
    EXPECT_EQ(back.tie_embeddings, m.tie_embeddings);
    EXPECT_DOUBLE_EQ(back.dropout, m.dropout);
    EXPECT_EQ(back.norm, "pre_ln");
    EXPECT_EQ(back.attention, "softmax");
  }
}

TEST(HfConfig, RefusesEachInexpressibleSettingByName) {
  EXPECT_EQ(refusal(small()), "");
  struct Case {
    const char* named;
    void (*apply)(ModelConfig&);
  } cases[] = {
      {"model.norm=none", [](ModelConfig& m) { m.norm = "none"; }},
      {"model.activation=swiglu", [](ModelConfig& m) { m.activation = "swiglu"; }},
      {"model.embed_scale=sqrt_d", [](ModelConfig& m) { m.embed_scale = "sqrt_d"; }},
      {"model.embed_norm=layernorm", [](ModelConfig& m) { m.embed_norm = "layernorm"; }},
      {"model.attention=linear", [](ModelConfig& m) { m.attention = "linear"; }},
  };
  for (const auto& c : cases) {
    ModelConfig m = small();
    c.apply(m);
    EXPECT_NE(refusal(m).find(c.named), std::string::npos) << c.named << ": " << refusal(m);
  }
  ModelConfig fine = small();  // expressible: relu, untied, bias=false, dropout, init
  fine.activation = "relu";
  fine.tie_embeddings = false;
  fine.bias = false;
  fine.init = "small";
  EXPECT_EQ(refusal(fine), "");
}

TEST(HfConfig, ImportRefusesGpt2ConfigsKeelCannotCompute) {
  const nlohmann::json base = {{"model_type", "gpt2"}, {"n_embd", 64}, {"n_head", 2}, {"n_layer", 2}};
  EXPECT_EQ(import_refusal(base), "");
  const ModelConfig defaults = model_config_from_hf(base, "config.json");
  EXPECT_EQ(defaults.vocab_size, 50257);  // GPT2Config's defaults fill absent fields
  EXPECT_EQ(defaults.context_length, 1024);
  EXPECT_EQ(defaults.activation, "gelu");
  const std::pair<const char*, nlohmann::json> cases[] = {
      {"activation_function", "gelu"},  {"activation_function", "silu"},
      {"layer_norm_epsilon", 1e-6},     {"scale_attn_weights", false},
      {"scale_attn_by_inverse_layer_idx", true}, {"add_cross_attention", true},
      {"model_type", "llama"},          {"pruned_heads", {{"0", {1}}}},
  };
  for (const auto& [field, value] : cases) {
    nlohmann::json c = base;
    c[field] = value;
    const std::string why = import_refusal(c);
    EXPECT_NE(why.find(field), std::string::npos) << field << "=" << value.dump() << ": '" << why << "'";
  }
  nlohmann::json odd = base;
  odd["n_head"] = 5;  // 64 % 5 != 0: Keel's own validation, prefixed with the file
  EXPECT_NE(import_refusal(odd).find("model.d_model"), std::string::npos);
}

TEST(HfNames, CoversEveryTensorOnceWithConv1DTransposes) {
  ModelConfig m = small();
  const auto tied = hf_tensors(m, 1000);
  EXPECT_EQ(tied.size(), 4u + 12u * 2u);
  std::set<std::string> hf, keel;
  for (const auto& t : tied) {
    EXPECT_TRUE(hf.insert(t.hf).second) << t.hf;
    EXPECT_TRUE(keel.insert(t.keel).second) << t.keel;
    const bool conv = t.hf.find(".weight") != std::string::npos &&
                      (t.hf.find("c_attn") != std::string::npos || t.hf.find("c_proj") != std::string::npos ||
                       t.hf.find("c_fc") != std::string::npos);
    EXPECT_EQ(t.transposed, conv) << t.hf;
  }
  EXPECT_EQ(tied[0].hf, "transformer.wte.weight");
  EXPECT_EQ(tied[0].hf_shape, (std::vector<int64_t>{1000, 64}));
  EXPECT_TRUE(tied[0].vocab_rows);
  EXPECT_EQ(hf.count("lm_head.weight"), 0u);  // tied: transformers ties it to wte on load
  for (const auto& t : tied)
    if (t.hf == "transformer.h.1.attn.c_attn.weight") EXPECT_EQ(t.hf_shape, (std::vector<int64_t>{64, 192}));

  m.tie_embeddings = false;
  m.bias = false;
  m.mlp_hidden = 96;
  const auto untied = hf_tensors(m, 1000);
  EXPECT_EQ(untied.back().hf, "lm_head.weight");
  EXPECT_FALSE(untied.back().transposed);
  int zero_biases = 0;
  for (const auto& t : untied) {
    zero_biases += t.zero_if_absent;
    if (t.hf == "transformer.h.0.mlp.c_fc.weight") EXPECT_EQ(t.hf_shape, (std::vector<int64_t>{64, 96}));
  }
  EXPECT_EQ(zero_biases, 4 * 2);  // c_attn, attn.c_proj, c_fc, mlp.c_proj per block; not the LayerNorms

  EXPECT_EQ(hf_canonical_name("h.0.ln_1.weight"), "transformer.h.0.ln_1.weight");
  EXPECT_EQ(hf_canonical_name("lm_head.weight"), "lm_head.weight");
  EXPECT_TRUE(hf_mask_buffer("transformer.h.3.attn.bias"));
  EXPECT_TRUE(hf_mask_buffer("transformer.h.3.attn.masked_bias"));
  EXPECT_FALSE(hf_mask_buffer("transformer.h.3.attn.c_attn.bias"));
}

}  // namespace
}  // namespace keel::interop
