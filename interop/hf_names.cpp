// The Keel <-> HF GPT-2 tensor table (see hf_names.h).
#include "interop/hf_names.h"

namespace keel::interop {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<HfTensor> hf_tensors(const ModelConfig& model, int64_t hf_vocab) {
  const int64_t C = model.d_model, H = model.mlp_hidden_width();
  std::vector<HfTensor> out;
  auto add = [&](std::string keel, std::string hf, std::vector<int64_t> shape, bool transposed = false,
                 bool vocab_rows = false, bool zero_if_absent = false) {
    out.push_back(HfTensor{std::move(keel), std::move(hf), std::move(shape), transposed, vocab_rows, zero_if_absent});
  };
  const bool no_bias = !model.bias;  // Keel's LayerNorms keep their bias either way (gpt.cpp)
  add("wte.weight", "transformer.wte.weight", {hf_vocab, C}, false, /*vocab_rows=*/true);
  add("wpe.weight", "transformer.wpe.weight", {model.context_length, C});
  for (int64_t i = 0; i < model.num_layers; ++i) {
    const std::string k = "blocks." + std::to_string(i) + ".", h = "transformer.h." + std::to_string(i) + ".";
    add(k + "ln_1.weight", h + "ln_1.weight", {C});
    add(k + "ln_1.bias", h + "ln_1.bias", {C});
    add(k + "attn.c_attn.weight", h + "attn.c_attn.weight", {C, 3 * C}, /*transposed=*/true);
    add(k + "attn.c_attn.bias", h + "attn.c_attn.bias", {3 * C}, false, false, no_bias);
    add(k + "attn.c_proj.weight", h + "attn.c_proj.weight", {C, C}, true);
    add(k + "attn.c_proj.bias", h + "attn.c_proj.bias", {C}, false, false, no_bias);
    add(k + "ln_2.weight", h + "ln_2.weight", {C});
    add(k + "ln_2.bias", h + "ln_2.bias", {C});
    add(k + "mlp.c_fc.weight", h + "mlp.c_fc.weight", {C, H}, true);
    add(k + "mlp.c_fc.bias", h + "mlp.c_fc.bias", {H}, false, false, no_bias);
    add(k + "mlp.c_proj.weight", h + "mlp.c_proj.weight", {H, C}, true);
    add(k + "mlp.c_proj.bias", h + "mlp.c_proj.bias", {C}, false, false, no_bias);
  }
  add("ln_f.weight", "transformer.ln_f.weight", {C});
  add("ln_f.bias", "transformer.ln_f.bias", {C});
  if (!model.tie_embeddings) add("lm_head.weight", "lm_head.weight", {hf_vocab, C}, false, /*vocab_rows=*/true);
  return out;
}

std::string hf_canonical_name(const std::string& name) {
  if (name.rfind("transformer.", 0) == 0 || name.rfind("lm_head.", 0) == 0) return name;
  return "transformer." + name;
}

bool hf_mask_buffer(const std::string& canonical_name) {
  return canonical_name.rfind("transformer.h.", 0) == 0 &&
         (ends_with(canonical_name, ".attn.bias") || ends_with(canonical_name, ".attn.masked_bias"));
}

}  // namespace keel::interop
