// GPT decoder implementation (see gpt.h for the architecture and parameter names).
#include "model/gpt.h"

#include <cmath>
#include <tuple>
#include <utility>

#include "common/check.h"
#include "model/lm_loss.h"
#include "model/torch_compat.h"
#include "parallel/tensor_parallel_ops.h"

namespace keel {
namespace {

// The norm model.norm asks for ("pre_ln": LayerNorm, "rms": RMSNorm). A LayerNorm keeps its bias
// even with model.bias=false (a zero bias, excluded from decay); RMSNorm has none.
Norm make_norm(int64_t width, const std::string& norm) { return Norm(width, norm == "rms" ? "rms" : "layernorm"); }

torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

// Input side of a column-parallel linear: f (identity forward, gradient all-reduced backward).
torch::Tensor column_parallel_input(const torch::Tensor& x, const TensorParallelPlacement& tp) {
  return tp.split() ? parallel::copy_to_tensor_parallel(x, *tp.comm) : x;
}

// A row-parallel linear: each rank multiplies its input slice by its weight columns, the partial
// outputs are summed over the TP group (g) and the bias, replicated, is added once.
torch::Tensor row_parallel(const torch::Tensor& x, torch::nn::Linear& linear, const TensorParallelPlacement& tp) {
  if (!tp.split()) return linear(x);
  auto y = parallel::reduce_from_tensor_parallel(torch::nn::functional::linear(x, linear->weight), *tp.comm);
  return linear->bias.defined() ? y + linear->bias : y;
}

// Parameters of a normalisation (LayerNorm, RMSNorm, QK-norm): ones/zeros at init, never decayed.
bool is_norm_parameter(const std::string& name) {
  return name.find("ln_") != std::string::npos || name.find("embed_ln") != std::string::npos ||
         name.find(".q_norm.") != std::string::npos || name.find(".k_norm.") != std::string::npos;
}

int64_t split_evenly(int64_t total, const TensorParallelPlacement& tp, const char* what) {
  if (total % tp.size != 0)
    throw ConfigError(std::string(what) + " (" + std::to_string(total) + ") must be divisible by parallel.tp (" +
                      std::to_string(tp.size) + ")");
  return total / tp.size;
}

}  // namespace

TensorParallelPlacement TensorParallelPlacement::of(parallel::Communicator* comm) {
  TensorParallelPlacement placement;
  if (comm && comm->size() > 1) {
    placement.comm = comm;
    placement.rank = comm->rank();
    placement.size = comm->size();
  }
  return placement;
}

torch::Tensor tensor_parallel_shard(const torch::Tensor& full, ShardKind kind, int64_t rank, int64_t size) {
  if (size == 1 || kind == ShardKind::kReplicated) return full;
  if (kind == ShardKind::kColumns) {
    const int64_t n = full.size(1) / size;
    return full.narrow(1, rank * n, n);
  }
  if (kind == ShardKind::kRows) {
    const int64_t n = full.size(0) / size;
    return full.narrow(0, rank * n, n);
  }
  // q, k and v stacked along dim 0: this rank's rows of each.
  const int64_t per = full.size(0) / 3, n = per / size;
  std::vector<torch::Tensor> parts;
  for (int64_t part = 0; part < 3; ++part) parts.push_back(full.narrow(0, part * per + rank * n, n));
  return torch::cat(parts, 0);
}

torch::Tensor tensor_parallel_unshard(const std::vector<torch::Tensor>& shards, ShardKind kind) {
  KEEL_CHECK(!shards.empty(), "tensor_parallel_unshard: no shards");
  if (shards.size() == 1 || kind == ShardKind::kReplicated) return shards[0];
  if (kind == ShardKind::kColumns) return torch::cat(shards, 1);
  if (kind == ShardKind::kRows) return torch::cat(shards, 0);
  std::vector<torch::Tensor> parts;
  for (int64_t part = 0; part < 3; ++part) {
    for (const auto& shard : shards) {
      const int64_t n = shard.size(0) / 3;
      parts.push_back(shard.narrow(0, part * n, n));
    }
  }
  return torch::cat(parts, 0);
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const ModelConfig& config, TensorParallelPlacement tp)
    : num_heads_(split_evenly(config.num_heads, tp, "model.num_heads")),
      head_dim_(config.head_dim()),
      rope_(config.position == "rope"),
      dropout_(config.dropout),
      tp_(tp) {
  const int64_t local_width = num_heads_ * head_dim_;
  c_attn = register_module("c_attn", make_linear(config.d_model, 3 * local_width, config.bias));
  c_proj = register_module("c_proj", make_linear(local_width, config.d_model, config.bias));
  if (config.qk_norm != "none") {
    q_norm = register_module("q_norm", make_norm(head_dim_, config.qk_norm));
    k_norm = register_module("k_norm", make_norm(head_dim_, config.qk_norm));
  }
  if (config.attention == "linear")
    supra = register_module("supra", LinearAttention(num_heads_, head_dim_, tp.rank * num_heads_, config.num_heads));
}

std::vector<torch::Tensor> CausalSelfAttentionImpl::heads_qkv(const torch::Tensor& x, int64_t start_pos) {
  const auto B = x.size(0), T = x.size(1);
  auto qkv = c_attn(column_parallel_input(x, tp_)).split(num_heads_ * head_dim_, /*dim=*/2);  // 3 x (B, T, C/tp)
  for (auto& t : qkv) t = t.view({B, T, num_heads_, head_dim_}).transpose(1, 2);             // (B, H/tp, T, D)
  const auto dtype = qkv[2].scalar_type();  // what SDPA gets for v (bf16 under autocast)
  if (q_norm) {
    // Each rank normalises its own heads with the shared weights: their gradients are summed over
    // the TP group (forward_tensor_parallel), or the replicas would drift apart.
    qkv[0] = (tp_.split() ? q_norm->forward_tensor_parallel(qkv[0], *tp_.comm) : q_norm(qkv[0])).to(dtype);
    qkv[1] = (tp_.split() ? k_norm->forward_tensor_parallel(qkv[1], *tp_.comm) : k_norm(qkv[1])).to(dtype);
  }
  if (rope_) {
    qkv[0] = apply_rotary(qkv[0], start_pos).to(dtype);  // rotation in fp32 (linear_attention.h)
    qkv[1] = apply_rotary(qkv[1], start_pos).to(dtype);
  }
  return qkv;
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  const auto B = x.size(0), T = x.size(1), local_width = num_heads_ * head_dim_;
  auto qkv = heads_qkv(x, 0);
  torch::Tensor y;  // (B, T, C/tp)
  if (linear()) {
    y = supra->forward(qkv[0], qkv[1], qkv[2]);
    if (is_training() && dropout_ > 0) y = torch::dropout(y, dropout_, /*train=*/true);
  } else {
    y = compat::causal_attention(qkv[0], qkv[1], qkv[2], is_training() ? dropout_ : 0.0);  // (B, H/tp, T, D)
    y = y.transpose(1, 2).contiguous().view({B, T, local_width});
  }
  return row_parallel(y, c_proj, tp_);  // (B, T, C)
}

torch::Tensor CausalSelfAttentionImpl::forward_cached(const torch::Tensor& x, int64_t start_pos,
                                                      AttentionCache& cache) {
  KEEL_CHECK(!tp_.split(), "incremental decoding runs on one process (load the checkpoint with parallel.tp=1)");
  const auto B = x.size(0), t = x.size(1), local_width = num_heads_ * head_dim_;
  auto qkv = heads_qkv(x, start_pos);
  torch::Tensor y;
  if (linear()) {
    y = supra->forward_recurrent(qkv[0], qkv[1], qkv[2], start_pos, cache.linear_state());  // (B, t, C)
  } else {
    auto [keys, values] = cache.append(qkv[1], qkv[2]);  // (B, H, P + t, D)
    const int64_t past = keys.size(2) - t;
    KEEL_CHECK(past == start_pos, "the KV cache holds " << past << " positions but the call starts at " << start_pos);
    if (past == 0 && t > 1) {
      y = compat::causal_attention(qkv[0], keys, values);  // the prompt: flash SDPA where LibTorch has it
    } else {
      // Decoding (t == 1) and chunks after cached positions: query i (position past + i) sees keys
      // 0 .. past + i. Explicit and small ((B, H, t, P + t) scores): SDPA would pick cuDNN on a GPU,
      // which builds an execution plan for every new key length, i.e. for every decoded token
      // (tens of ms each: docs/linear-attention.md).
      auto q = qkv[0];
      auto scores = torch::matmul(q, keys.transpose(-2, -1)).to(torch::kFloat) / std::sqrt(static_cast<double>(head_dim_));
      if (t > 1) {
        auto rows = torch::arange(t, torch::TensorOptions().dtype(torch::kLong).device(x.device())).view({t, 1}) + past;
        auto cols = torch::arange(past + t, torch::TensorOptions().dtype(torch::kLong).device(x.device())).view({1, past + t});
        scores = scores.masked_fill(cols > rows, -std::numeric_limits<float>::infinity());
      }
      y = torch::matmul(torch::softmax(scores, -1).to(values.scalar_type()), values);
    }
    y = y.transpose(1, 2).contiguous().view({B, t, local_width});
  }
  return c_proj(y);
}

torch::Tensor CausalSelfAttentionImpl::attention_probabilities(const torch::Tensor& x, torch::Tensor* max_logit) {
  const auto T = x.size(1);
  auto qkv = heads_qkv(x, 0);  // the very q and k the attention uses (normalised, rotated)
  if (linear()) return supra->attention_weights(qkv[0], qkv[1]);
  auto q = qkv[0].to(torch::kFloat);
  auto k = qkv[1].to(torch::kFloat);
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim_));
  auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).triu(1);
  scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  if (max_logit) *max_logit = scores.amax();
  return torch::softmax(scores, -1);  // (B,H,T,T)
}

MlpImpl::MlpImpl(const ModelConfig& config, TensorParallelPlacement tp) : activation_(config.activation), tp_(tp) {
  const int64_t hidden = split_evenly(config.mlp_hidden_width(), tp, "the MLP hidden width");
  if (activation_ == "swiglu") {
    w_gate = register_module("w_gate", make_linear(config.d_model, hidden, config.bias));
    w_up = register_module("w_up", make_linear(config.d_model, hidden, config.bias));
  } else {
    c_fc = register_module("c_fc", make_linear(config.d_model, hidden, config.bias));
  }
  c_proj = register_module("c_proj", make_linear(hidden, config.d_model, config.bias));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& input, torch::Tensor* activations) {
  const torch::Tensor x = column_parallel_input(input, tp_);
  torch::Tensor h;  // (B, T, hidden/tp)
  if (activation_ == "swiglu") {
    h = torch::silu(w_gate(x)) * w_up(x);
  } else if (activation_ == "relu") {
    h = torch::relu(c_fc(x));
  } else {
    h = torch::gelu(c_fc(x), "tanh");
  }
  if (activations) *activations = h.detach();
  return row_parallel(h, c_proj, tp_);
}

BlockImpl::BlockImpl(const ModelConfig& config, TensorParallelPlacement tp) : dropout_(config.dropout) {
  if (config.norm != "none") {
    ln_1 = register_module("ln_1", make_norm(config.d_model, config.norm));
    ln_2 = register_module("ln_2", make_norm(config.d_model, config.norm));
  }
  attn = register_module("attn", CausalSelfAttention(config, tp));
  mlp = register_module("mlp", Mlp(config, tp));
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

std::pair<torch::Tensor, torch::Tensor> BlockImpl::forward_deferred(const torch::Tensor& x, const torch::Tensor& pending,
                                                                    bool fused) {
  const auto first = residual_norm(x, pending, *ln_1, fused);  // x + pending, ln_1 of it
  auto attention_out = attn(first.normalised);
  if (dropout_ > 0) attention_out = torch::dropout(attention_out, dropout_, is_training());
  const auto second = residual_norm(first.residual, attention_out, *ln_2, fused);
  auto mlp_out = mlp->forward(second.normalised);
  if (dropout_ > 0) mlp_out = torch::dropout(mlp_out, dropout_, is_training());
  return {second.residual, mlp_out};
}

torch::Tensor BlockImpl::forward_cached(const torch::Tensor& x, int64_t start_pos, AttentionCache& cache,
                                        const std::function<torch::Tensor(const torch::Tensor&)>& mlp_override,
                                        ForwardTrace* trace) {
  auto h = x + attn->forward_cached(ln_1 ? ln_1(x) : x, start_pos, cache);
  auto mlp_in = ln_2 ? ln_2(h) : h;
  if (mlp_override) return h + mlp_override(mlp_in);
  torch::Tensor activations;
  auto out = h + mlp->forward(mlp_in, trace ? &activations : nullptr);
  if (trace) trace->mlp_activations.push_back(activations);
  return out;
}

GptImpl::GptImpl(const ModelConfig& config, parallel::Communicator* tp)
    : config_(config), tp_(TensorParallelPlacement::of(tp)) {
  config_.validate();
  // LibTorch's module constructors draw their own default init, whose RNG use depends on the
  // (TP-local) shapes; rewinding the generator afterwards makes reset_parameters() the only
  // consumer, so TP shards and a single-process model draw identical weights.
  auto generator = at::detail::getDefaultCPUGenerator();
  const torch::Tensor rng_before = generator.get_state();
  const int64_t local_vocab = split_evenly(config.vocab_size, tp_, "model.vocab_size");
  wte = register_module("wte", torch::nn::Embedding(local_vocab, config.d_model));
  if (config.position == "learned")
    wpe = register_module("wpe", torch::nn::Embedding(config.context_length, config.d_model));
  if (config.embed_norm == "layernorm") embed_ln = register_module("embed_ln", Norm(config.d_model, "layernorm"));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_layers; ++i) blocks->push_back(Block(config, tp_));
  if (config.norm != "none") ln_f = register_module("ln_f", make_norm(config.d_model, config.norm));
  if (!config.tie_embeddings)
    lm_head = register_module("lm_head", make_linear(config.d_model, local_vocab, /*bias=*/false));
  generator.set_state(rng_before);
  reset_parameters();
}

void GptImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const double std = config_.init_std();
  const double out_std = config_.scaled_out_proj ? std / std::sqrt(2.0 * config_.num_layers) : std;
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    const ShardKind kind = shard_kind(name);
    // A TP shard is cut from a full-size draw, so every rank consumes the RNG exactly like a
    // single-process model and holds the same values as the matching slice of it.
    torch::Tensor local = item.value();
    torch::Tensor p = local;
    if (tp_.split() && kind != ShardKind::kReplicated) {
      auto full_shape = local.sizes().vec();
      full_shape[kind == ShardKind::kColumns ? 1 : 0] *= tp_.size;
      p = torch::empty(full_shape, local.options());
    }
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool is_norm = is_norm_parameter(name);
    if (name.find(".attn.supra.") != std::string::npos) {
      // SUPRA's new parameters: phi = identity, GroupNorm = identity affine (no RNG use, so a
      // linear model draws exactly the softmax model's weights for everything else).
      if (name_ends_with(name, ".phi_weight")) {
        p.copy_(torch::eye(p.size(1), p.options()).expand_as(p));
      } else if (name_ends_with(name, ".norm_weight")) {
        p.fill_(1.0);
      } else {
        p.zero_();
      }
    } else if (is_norm) {
      is_bias ? p.zero_() : p.fill_(1.0);
    } else if (is_bias) {
      p.zero_();
    } else if (name.find(".c_proj.weight") != std::string::npos) {
      p.normal_(0.0, out_std);  // the projections that write into the residual stream
    } else {
      p.normal_(0.0, std);
    }
    if (!p.is_same(local)) local.copy_(tensor_parallel_shard(p, kind, tp_.rank, tp_.size));
  }
}

torch::Tensor GptImpl::embed(const torch::Tensor& idx, int64_t start_pos) {
  const auto T = idx.size(1);
  KEEL_CHECK(start_pos + T <= config_.context_length,
             "sequence length " << start_pos + T << " exceeds model.context_length " << config_.context_length);
  auto positions =
      torch::arange(start_pos, start_pos + T, torch::TensorOptions().dtype(torch::kLong).device(idx.device()));
  torch::Tensor tokens;  // (B, T, C)
  if (tp_.split()) {
    // Vocab-parallel lookup: ids outside this rank's rows contribute zeros; the sum over ranks
    // is the full lookup.
    const int64_t local_vocab = wte->weight.size(0);
    auto local_ids = idx - vocab_start();
    auto owned = (local_ids >= 0) & (local_ids < local_vocab);  // (B, T)
    tokens = wte(local_ids.clamp(0, local_vocab - 1)).masked_fill(~owned.unsqueeze(-1), 0.0);
    tokens = parallel::reduce_from_tensor_parallel(tokens, *tp_.comm);
  } else {
    tokens = wte(idx);
  }
  auto x = wpe ? tokens + wpe(positions) : tokens;  // (B, T, C); rope: positions enter in the attention
  if (config_.embed_scale == "sqrt_d") x = x * std::sqrt(static_cast<double>(config_.d_model));
  if (embed_ln) x = embed_ln(x);
  return x;
}

torch::Tensor GptImpl::forward(const torch::Tensor& idx, ForwardTrace* trace) {
  auto x = embed(idx);
  if (config_.dropout > 0) x = torch::dropout(x, config_.dropout, is_training());
  if (trace) trace->embedding_output = x.detach();
  if (!trace && ln_f) {
    // Each residual add is done together with the norm that reads its result (residual_norm):
    // a block hands its MLP output on, and the next block (or ln_f) adds it.
    torch::Tensor pending;  // (B, T, C) the last sub-layer output not yet in x
    for (const auto& module : *blocks)
      std::tie(x, pending) = module->as<Block>()->forward_deferred(x, pending, fused_residual_norm_);
    x = column_parallel_input(residual_norm(x, pending, *ln_f, fused_residual_norm_).normalised, tp_);
    return lm_head ? lm_head(x) : torch::matmul(x, wte->weight.t());  // (B, T, V/tp)
  }
  for (const auto& module : *blocks) {
    if (trace) trace->block_inputs.push_back(x.detach());
    x = module->as<Block>()->forward(x, trace);
    if (trace) trace->block_outputs.push_back(x.detach());
  }
  if (ln_f) x = ln_f(x);
  x = column_parallel_input(x, tp_);
  return lm_head ? lm_head(x) : torch::matmul(x, wte->weight.t());  // (B, T, V/tp)
}

torch::Tensor GptImpl::forward_cached(const torch::Tensor& idx, int64_t start_pos, const DecodeHooks& hooks) {
  KEEL_CHECK(!tp_.split(), "incremental decoding runs on one process (load the checkpoint with parallel.tp=1)");
  KEEL_CHECK(hooks.caches.size() == blocks->size(),
             "forward_cached: " << hooks.caches.size() << " caches for " << blocks->size() << " blocks");
  auto x = embed(idx, start_pos);  // (B, t, C)
  for (size_t i = 0; i < blocks->size(); ++i) {
    static const std::function<torch::Tensor(const torch::Tensor&)> dense;
    const auto& mlp = i < hooks.mlp.size() ? hooks.mlp[i] : dense;
    x = blocks[i]->as<Block>()->forward_cached(x, start_pos, *hooks.caches[i], mlp, hooks.trace);
  }
  if (ln_f) x = ln_f(x);
  return lm_head ? lm_head(x) : torch::matmul(x, wte->weight.t());  // (B, t, V)
}

torch::Tensor GptImpl::loss(const torch::Tensor& idx, const torch::Tensor& targets) {
  return loss_terms(idx, targets, /*want_z=*/false).cross_entropy;
}

LmLossTerms GptImpl::loss_terms(const torch::Tensor& idx, const torch::Tensor& targets, bool want_z) {
  auto logits = forward(idx);
  auto flat_logits = logits.view({-1, logits.size(-1)});  // (B*T, V or V/tp)
  if (tp_.split()) {
    if (!want_z)
      return {parallel::vocab_parallel_cross_entropy(flat_logits, targets.reshape({-1}), vocab_start(), *tp_.comm),
              torch::Tensor()};
    auto terms = parallel::vocab_parallel_cross_entropy_terms(flat_logits, targets.reshape({-1}), vocab_start(), *tp_.comm);
    return {terms.cross_entropy, terms.z};
  }
  // The logits are this function's own: the fused backward may write their gradient over them.
  return lm_loss_terms(flat_logits, targets.reshape({-1}), fused_cross_entropy_, /*grad_over_logits=*/true, want_z);
}

int64_t GptImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& item : named_parameters())
    n += item.value().numel() * (shard_kind(item.key()) == ShardKind::kReplicated ? 1 : tp_.size);
  return n;
}

int64_t GptImpl::num_non_embedding_parameters() const {
  return num_parameters() - wte->weight.numel() * tp_.size - (wpe ? wpe->weight.numel() : 0);
}

bool GptImpl::decays(const std::string& name) const {
  // Matrices of linear layers decay; embeddings, norms and biases do not (GPT-2/nanoGPT practice).
  if (name.rfind("wte.", 0) == 0 || name.rfind("wpe.", 0) == 0) return false;
  if (is_norm_parameter(name)) return false;
  return name.size() >= 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
}

std::vector<std::pair<std::string, std::vector<torch::Tensor>>> GptImpl::layer_groups() {
  std::vector<std::pair<std::string, std::vector<torch::Tensor>>> groups;
  std::vector<torch::Tensor> embedding = {wte->weight};
  if (wpe) embedding.push_back(wpe->weight);
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
