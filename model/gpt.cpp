// GPT decoder implementation (see gpt.h for the architecture and parameter names).
#include "model/gpt.h"

#include <cmath>

#include "common/check.h"
#include "model/torch_compat.h"

namespace keel {
namespace {

torch::nn::LayerNorm make_layer_norm(int64_t width, bool bias) {
  // LibTorch's LayerNorm has no bias-free variant; bias=false still keeps a zero bias that is
  // excluded from decay. Recipes use bias=true (GPT-2).
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).elementwise_affine(true));
}

torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

}  // namespace

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const ModelConfig& config)
    : num_heads_(config.num_heads), head_dim_(config.head_dim()), dropout_(config.dropout) {
  c_attn = register_module("c_attn", make_linear(config.d_model, 3 * config.d_model, config.bias));
  c_proj = register_module("c_proj", make_linear(config.d_model, config.d_model, config.bias));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  const auto B = x.size(0), T = x.size(1), C = x.size(2);
  auto qkv = c_attn(x).split(C, /*dim=*/2);  // 3 x (B, T, C)
  auto heads = [&](const torch::Tensor& t) { return t.view({B, T, num_heads_, head_dim_}).transpose(1, 2); };
  auto y = compat::causal_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]),
                                    is_training() ? dropout_ : 0.0);  // (B, H, T, D)
  y = y.transpose(1, 2).contiguous().view({B, T, C});
  return c_proj(y);
}

torch::Tensor CausalSelfAttentionImpl::attention_probabilities(const torch::Tensor& x) {
  const auto B = x.size(0), T = x.size(1), C = x.size(2);
  auto qkv = c_attn(x).split(C, 2);
  auto q = qkv[0].view({B, T, num_heads_, head_dim_}).transpose(1, 2).to(torch::kFloat);
  auto k = qkv[1].view({B, T, num_heads_, head_dim_}).transpose(1, 2).to(torch::kFloat);
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim_));
  auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).triu(1);
  return torch::softmax(scores.masked_fill(mask, -std::numeric_limits<float>::infinity()), -1);  // (B,H,T,T)
}

MlpImpl::MlpImpl(const ModelConfig& config) : activation_(config.activation) {
  const int64_t hidden = config.mlp_hidden_width();
  if (activation_ == "swiglu") {
    w_gate = register_module("w_gate", make_linear(config.d_model, hidden, config.bias));
    w_up = register_module("w_up", make_linear(config.d_model, hidden, config.bias));
  } else {
    c_fc = register_module("c_fc", make_linear(config.d_model, hidden, config.bias));
  }
  c_proj = register_module("c_proj", make_linear(hidden, config.d_model, config.bias));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x, torch::Tensor* activations) {
  torch::Tensor h;  // (B, T, hidden)
  if (activation_ == "swiglu") {
    h = torch::silu(w_gate(x)) * w_up(x);
  } else if (activation_ == "relu") {
    h = torch::relu(c_fc(x));
  } else {
    h = torch::gelu(c_fc(x), "tanh");
  }
  if (activations) *activations = h.detach();
  return c_proj(h);
}

BlockImpl::BlockImpl(const ModelConfig& config) : dropout_(config.dropout) {
  if (config.norm == "pre_ln") {
    ln_1 = register_module("ln_1", make_layer_norm(config.d_model, config.bias));
    ln_2 = register_module("ln_2", make_layer_norm(config.d_model, config.bias));
  }
  attn = register_module("attn", CausalSelfAttention(config));
  mlp = register_module("mlp", Mlp(config));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, ForwardTrace* trace) {
  auto attention_out = attn(ln_1 ? ln_1(x) : x);
  if (dropout_ > 0) attention_out = torch::dropout(attention_out, dropout_, is_training());
  auto h = x + attention_out;
  torch::Tensor activations;
  auto mlp_out = mlp->forward(ln_2 ? ln_2(h) : h, trace ? &activations : nullptr);
  if (dropout_ > 0) mlp_out = torch::dropout(mlp_out, dropout_, is_training());
  if (trace) {
    trace->attention_outputs.push_back(attention_out.detach());
    trace->mlp_outputs.push_back(mlp_out.detach());
    trace->mlp_activations.push_back(activations);
  }
  return h + mlp_out;
}

GptImpl::GptImpl(const ModelConfig& config) : config_(config) {
  config_.validate();
  wte = register_module("wte", torch::nn::Embedding(config.vocab_size, config.d_model));
  wpe = register_module("wpe", torch::nn::Embedding(config.context_length, config.d_model));
  if (config.embed_norm == "layernorm")
    embed_ln = register_module("embed_ln", make_layer_norm(config.d_model, config.bias));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_layers; ++i) blocks->push_back(Block(config));
  if (config.norm == "pre_ln") ln_f = register_module("ln_f", make_layer_norm(config.d_model, config.bias));
  if (!config.tie_embeddings)
    lm_head = register_module("lm_head", make_linear(config.d_model, config.vocab_size, /*bias=*/false));
  reset_parameters();
}

void GptImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const double std = config_.init_std();
  const double out_std = config_.scaled_out_proj ? std / std::sqrt(2.0 * config_.num_layers) : std;
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    auto& p = item.value();
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool is_norm = name.find("ln_") != std::string::npos || name.find("embed_ln") != std::string::npos;
    if (is_norm) {
      is_bias ? p.zero_() : p.fill_(1.0);
    } else if (is_bias) {
      p.zero_();
    } else if (name.find(".c_proj.weight") != std::string::npos) {
      p.normal_(0.0, out_std);  // the projections that write into the residual stream
    } else {
      p.normal_(0.0, std);
    }
  }
}

torch::Tensor GptImpl::embed(const torch::Tensor& idx) {
  const auto T = idx.size(1);
  KEEL_CHECK(T <= config_.context_length,
             "sequence length " << T << " exceeds model.context_length " << config_.context_length);
  auto positions = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(idx.device()));
  auto x = wte(idx) + wpe(positions);  // (B, T, C)
  if (config_.embed_scale == "sqrt_d") x = x * std::sqrt(static_cast<double>(config_.d_model));
  if (embed_ln) x = embed_ln(x);
  return x;
}

torch::Tensor GptImpl::forward(const torch::Tensor& idx, ForwardTrace* trace) {
  auto x = embed(idx);
  if (config_.dropout > 0) x = torch::dropout(x, config_.dropout, is_training());
  if (trace) trace->embedding_output = x.detach();
  for (const auto& module : *blocks) {
    if (trace) trace->block_inputs.push_back(x.detach());
    x = module->as<Block>()->forward(x, trace);
    if (trace) trace->block_outputs.push_back(x.detach());
  }
  if (ln_f) x = ln_f(x);
  return lm_head ? lm_head(x) : torch::matmul(x, wte->weight.t());  // (B, T, V)
}

torch::Tensor GptImpl::loss(const torch::Tensor& idx, const torch::Tensor& targets) {
  auto logits = forward(idx);
  return torch::nn::functional::cross_entropy(logits.view({-1, logits.size(-1)}).to(torch::kFloat),
                                              targets.reshape({-1}));
}

int64_t GptImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

int64_t GptImpl::num_non_embedding_parameters() const {
  int64_t n = num_parameters() - wte->weight.numel() - wpe->weight.numel();
  return n;
}

bool GptImpl::decays(const std::string& name) const {
  // Matrices of linear layers decay; embeddings, norms and biases do not (GPT-2/nanoGPT practice).
  if (name.rfind("wte.", 0) == 0 || name.rfind("wpe.", 0) == 0) return false;
  if (name.find("ln_") != std::string::npos || name.find("embed_ln") != std::string::npos) return false;
  return name.size() >= 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
}

std::vector<std::pair<std::string, std::vector<torch::Tensor>>> GptImpl::layer_groups() {
  std::vector<std::pair<std::string, std::vector<torch::Tensor>>> groups;
  std::vector<torch::Tensor> embedding = {wte->weight, wpe->weight};
  if (embed_ln) {
    for (auto& p : embed_ln->parameters()) embedding.push_back(p);
  }
  groups.emplace_back("embedding", embedding);
  for (size_t i = 0; i < blocks->size(); ++i)
    groups.emplace_back("block." + std::to_string(i), blocks[i]->parameters());
  std::vector<torch::Tensor> head;
  if (ln_f) {
    for (auto& p : ln_f->parameters()) head.push_back(p);
  }
  if (lm_head) head.push_back(lm_head->weight);
  if (!head.empty()) groups.emplace_back("head", head);
  return groups;
}

}  // namespace keel
