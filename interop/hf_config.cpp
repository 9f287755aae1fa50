// Keel ModelConfig <-> GPT2Config (see hf_config.h for the rules).
#include "interop/hf_config.h"

#include <cmath>
#include <sstream>

#include "common/config.h"

namespace keel::interop {
namespace {

[[noreturn]] void refuse_export(const std::string& setting, const std::string& why) {
  throw ConfigError("keel export --format hf: " + setting + " cannot be expressed as a Hugging Face GPT-2 model (" +
                    why + "); refusing to write a model that would compute something else");
}

// A GPT2Config field, or GPT2Config's default when config.json leaves it out.
template <typename T>
T field_or(const nlohmann::json& config, const char* key, T fallback, const std::string& origin) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  try {
    return config[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    throw ConfigError(origin + ": field '" + key + "' has the wrong type (" + config[key].dump() + ")");
  }
}

[[noreturn]] void refuse_import(const std::string& origin, const std::string& field, const nlohmann::json& value,
                                const std::string& why) {
  throw ConfigError(origin + ": " + field + "=" + value.dump() + " cannot be expressed by a Keel model (" + why +
                    "); refusing to import it");
}

}  // namespace

void check_hf_expressible(const ModelConfig& model) {
  if (model.norm != "pre_ln")
    refuse_export("model.norm=" + model.norm, "GPT-2 has a LayerNorm before every sublayer and at the end");
  if (model.activation == "swiglu")
    refuse_export("model.activation=swiglu", "GPT-2's MLP is c_fc -> activation -> c_proj, without a gate");
  if (model.embed_scale != "1")
    refuse_export("model.embed_scale=" + model.embed_scale, "GPT-2 adds token and position embeddings unscaled");
  if (model.embed_norm != "none")
    refuse_export("model.embed_norm=" + model.embed_norm, "GPT-2 has no LayerNorm on the embedding output");
  if (model.attention != "softmax")
    refuse_export("model.attention=" + model.attention, "GPT-2 has causal softmax attention only");
  if (model.qk_norm != "none")
    refuse_export("model.qk_norm=" + model.qk_norm, "GPT-2 does not normalise queries and keys");
  if (model.position != "learned")
    refuse_export("model.position=" + model.position, "GPT-2 has a learned position table (wpe), no rotary positions");
  // Expressible, mapped by hf_config_json / hf_names: activation gelu (tanh) -> gelu_new, relu ->
  // relu; mlp_hidden -> n_inner; tie_embeddings=false -> tie_word_embeddings=false + lm_head.weight;
  // bias=false -> zero biases (GPT-2 always has them); dropout -> resid/embd/attn_pdrop (Keel
  // applies it at the same three places). init and scaled_out_proj only shape the initial weights.
}

nlohmann::json hf_config_json(const ModelConfig& model, const HfConfigExtras& extras) {
  check_hf_expressible(model);
  const int64_t hidden = model.mlp_hidden_width();
  nlohmann::json config = {
      {"model_type", "gpt2"},
      {"architectures", {"GPT2LMHeadModel"}},
      {"vocab_size", extras.vocab_size},
      {"n_positions", model.context_length},
      {"n_ctx", model.context_length},  // older transformers' name of n_positions
      {"n_embd", model.d_model},
      {"n_layer", model.num_layers},
      {"n_head", model.num_heads},
      // null = GPT-2's 4 x n_embd, which is Keel's gelu/relu default too.
      {"n_inner", hidden == 4 * model.d_model ? nlohmann::json(nullptr) : nlohmann::json(hidden)},
      {"activation_function", model.activation == "relu" ? "relu" : kHfGeluTanh},
      {"layer_norm_epsilon", kKeelLayerNormEpsilon},
      {"resid_pdrop", model.dropout},
      {"embd_pdrop", model.dropout},
      {"attn_pdrop", model.dropout},
      {"initializer_range", model.init_std()},
      {"scale_attn_weights", true},  // scores / sqrt(head_dim), as Keel's attention
      {"scale_attn_by_inverse_layer_idx", false},
      {"reorder_and_upcast_attn", false},
      {"tie_word_embeddings", model.tie_embeddings},
      {"use_cache", true},
      {"torch_dtype", "float32"},
  };
  if (extras.eos_id >= 0) {
    config["bos_token_id"] = extras.eos_id;
    config["eos_token_id"] = extras.eos_id;
  }
  config["keel_export"] = extras.provenance;
  return config;
}

nlohmann::json hf_generation_config_json(const HfConfigExtras& extras) {
  nlohmann::json config = {{"_from_model_config", true}};
  if (extras.eos_id >= 0) {
    config["bos_token_id"] = extras.eos_id;
    config["eos_token_id"] = extras.eos_id;
  }
  return config;
}

ModelConfig model_config_from_hf(const nlohmann::json& config, const std::string& origin) {
  if (!config.is_object()) throw ConfigError(origin + ": not a JSON object");
  const std::string model_type = field_or<std::string>(config, "model_type", "", origin);
  if (model_type != "gpt2")
    refuse_import(origin, "model_type", config.value("model_type", nlohmann::json(nullptr)),
                  "only GPT-2 (GPT2LMHeadModel) configs are imported");
  if (config.contains("architectures") && config["architectures"].is_array()) {
    for (const auto& a : config["architectures"])
      if (a != "GPT2LMHeadModel" && a != "GPT2Model")
        refuse_import(origin, "architectures", config["architectures"], "only GPT2LMHeadModel weights are imported");
  }
  ModelConfig m;
  // GPT2Config's defaults apply to absent fields (transformers does the same).
  m.vocab_size = field_or<int64_t>(config, "vocab_size", 50257, origin);
  m.context_length = field_or<int64_t>(config, "n_positions", 1024, origin);
  m.d_model = field_or<int64_t>(config, "n_embd", 768, origin);
  m.num_layers = field_or<int64_t>(config, "n_layer", 12, origin);
  m.num_heads = field_or<int64_t>(config, "n_head", 12, origin);
  const int64_t n_inner = field_or<int64_t>(config, "n_inner", 0, origin);
  m.mlp_hidden = n_inner == 4 * m.d_model ? 0 : n_inner;

  const std::string act = field_or<std::string>(config, "activation_function", "gelu_new", origin);
  if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast") {
    m.activation = "gelu";  // all three are the tanh approximation Keel computes
  } else if (act == "relu") {
    m.activation = "relu";
  } else {
    refuse_import(origin, "activation_function", act,
                  act == "gelu" ? "that is the exact erf GELU; Keel's GELU is the tanh approximation (gelu_new)"
                                : "Keel's MLP computes gelu_new (tanh GELU) or relu");
  }
  const double eps = field_or<double>(config, "layer_norm_epsilon", 1e-5, origin);
  if (std::abs(eps - kKeelLayerNormEpsilon) > 1e-12)
    refuse_import(origin, "layer_norm_epsilon", eps, "Keel's LayerNorms use epsilon 1e-5");
  if (!field_or<bool>(config, "scale_attn_weights", true, origin))
    refuse_import(origin, "scale_attn_weights", false, "Keel scales attention scores by 1/sqrt(head_dim)");
  if (field_or<bool>(config, "scale_attn_by_inverse_layer_idx", false, origin))
    refuse_import(origin, "scale_attn_by_inverse_layer_idx", true, "Keel's attention has no per-layer scaling");
  if (field_or<bool>(config, "add_cross_attention", false, origin))
    refuse_import(origin, "add_cross_attention", true, "Keel is a decoder-only model");
  if (config.contains("pruned_heads") && !config["pruned_heads"].empty())
    refuse_import(origin, "pruned_heads", config["pruned_heads"], "every Keel block has all its heads");
  // reorder_and_upcast_attn only changes the precision of the score computation (fp32 either way
  // on the CPU), not the function: accepted.
  m.tie_embeddings = field_or<bool>(config, "tie_word_embeddings", true, origin);
  const double resid = field_or<double>(config, "resid_pdrop", 0.1, origin);
  m.dropout = resid;  // Keel has one dropout for the three places GPT-2 names separately
  // initializer_range is not mapped: init only draws fresh weights, and an imported model has none.
  m.norm = "pre_ln";
  m.embed_scale = "1";
  m.embed_norm = "none";
  m.attention = "softmax";
  m.qk_norm = "none";
  m.position = "learned";
  m.bias = true;
  try {
    m.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(origin + ": " + e.what());
  }
  return m;
}

}  // namespace keel::interop
