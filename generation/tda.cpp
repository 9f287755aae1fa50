// TDA: neuron scores, selection and the sliced MLP (see tda.h).
#include "generation/tda.h"

#include <cmath>

#include "common/check.h"

namespace keel {
namespace {

torch::Tensor activate(const std::string& activation, const torch::Tensor& pre) {
  return activation == "relu" ? torch::relu(pre) : torch::gelu(pre, "tanh");
}

}  // namespace

torch::Tensor tda_neuron_scores(const torch::Tensor& activations) {
  return activations.to(torch::kFloat).reshape({-1, activations.size(-1)}).pow(2).sum(0).sqrt();  // (hidden)
}

torch::Tensor tda_select(const torch::Tensor& scores, const TdaOptions& options) {
  KEEL_CHECK(options.enabled(), "tda_select: neither a threshold nor a sparsity is set");
  const int64_t hidden = scores.size(0);
  if (options.threshold >= 0) {
    auto keep = scores >= options.threshold * scores.mean();
    return keep.nonzero().reshape({-1});
  }
  KEEL_CHECK(options.sparsity < 1.0, "TDA sparsity must be in [0, 1), got " << options.sparsity);
  const int64_t k = std::max<int64_t>(1, std::llround((1.0 - options.sparsity) * static_cast<double>(hidden)));
  return std::get<0>(std::get<1>(scores.topk(k)).sort());
}

SlicedMlp::SlicedMlp(Mlp& mlp, const std::string& activation, const torch::Tensor& keep)
    : activation_(activation), kept_(keep.size(0)) {
  torch::NoGradGuard no_grad;
  auto index = keep.to(mlp->c_proj->weight.device());
  auto rows = [&](const torch::nn::Linear& linear, torch::Tensor& w, torch::Tensor& b) {
    w = linear->weight.index_select(0, index).contiguous();  // (k, C)
    if (linear->bias.defined()) b = linear->bias.index_select(0, index).contiguous();
  };
  if (activation_ == "swiglu") {
    rows(mlp->w_gate, fc_w_, fc_b_);
    rows(mlp->w_up, up_w_, up_b_);
  } else {
    rows(mlp->c_fc, fc_w_, fc_b_);
  }
  proj_w_ = mlp->c_proj->weight.index_select(1, index).contiguous();  // (C, k)
  proj_b_ = mlp->c_proj->bias;
}

torch::Tensor SlicedMlp::operator()(const torch::Tensor& x) const {
  namespace F = torch::nn::functional;
  auto pre = F::linear(x, fc_w_, fc_b_);  // (B, t, k)
  auto h = activation_ == "swiglu" ? torch::silu(pre) * F::linear(x, up_w_, up_b_) : activate(activation_, pre);
  return F::linear(h, proj_w_, proj_b_);  // (B, t, C)
}

torch::Tensor masked_dense_mlp(Mlp& mlp, const std::string& activation, const torch::Tensor& x,
                               const torch::Tensor& keep) {
  torch::Tensor h;  // (B, t, hidden)
  if (activation == "swiglu") {
    h = torch::silu(mlp->w_gate(x)) * mlp->w_up(x);
  } else {
    h = activate(activation, mlp->c_fc(x));
  }
  auto mask = torch::zeros({h.size(-1)}, h.options());
  mask.index_fill_(0, keep.to(h.device()), 1.0);
  return mlp->c_proj(h * mask);
}

std::vector<std::function<torch::Tensor(const torch::Tensor&)>> TdaPlan::hooks() const {
  std::vector<std::function<torch::Tensor(const torch::Tensor&)>> out;
  for (const auto& layer : layers) {
    if (layer) {
      out.emplace_back([layer](const torch::Tensor& x) { return (*layer)(x); });
    } else {
      out.emplace_back();
    }
  }
  return out;
}

TdaPlan plan_tda(Gpt& model, const ForwardTrace& prefill, const TdaOptions& options) {
  const auto& blocks = *model->blocks;
  KEEL_CHECK(prefill.mlp_activations.size() == blocks.size(),
             "TDA: the prefill traced " << prefill.mlp_activations.size() << " MLPs for " << blocks.size() << " blocks");
  TdaPlan plan;
  int64_t dropped = 0, total = 0;
  for (size_t l = 0; l < blocks.size(); ++l) {
    const auto& activations = prefill.mlp_activations[l];  // (B, P, hidden)
    const int64_t hidden = activations.size(-1);
    auto keep = tda_select(tda_neuron_scores(activations), options);
    const int64_t kept = keep.size(0);
    auto mlp = blocks[l]->as<Block>()->mlp;
    plan.layers.push_back(kept == hidden ? nullptr
                                         : std::make_shared<SlicedMlp>(mlp, model->config().activation, keep));
    plan.layer_sparsity.push_back(1.0 - static_cast<double>(kept) / static_cast<double>(hidden));
    dropped += hidden - kept;
    total += hidden;
  }
  plan.sparsity = total > 0 ? static_cast<double>(dropped) / static_cast<double>(total) : 0.0;
  return plan;
}

}  // namespace keel
