// One step's signals, clipping and the update ratio (see step_signals.h).
#include "worker/step_signals.h"

#include <cmath>
#include <map>
#include <set>

#include "common/check.h"
#include "model/torch_compat.h"
#include "parallel/torch_adapter.h"

namespace keel {

StepSignalReader::StepSignalReader(Gpt& model, const std::vector<torch::Tensor>& params,
                                       const std::vector<bool>& sharded, parallel::Communicator& tp,
                                       torch::Device device)
    : tp_(tp), device_(device), params_(params), param_sharded_(sharded) {
  std::set<const void*> sharded_impls;
  for (size_t i = 0; i < params.size(); ++i)
    if (sharded[i]) sharded_impls.insert(params[i].unsafeGetTensorImpl());
  for (auto& [name, group] : model->layer_groups()) {
    layer_names_.push_back(name);
    layer_sharded_params_.emplace_back();
    layer_replicated_params_.emplace_back();
    for (const auto& p : group)
      (sharded_impls.count(p.unsafeGetTensorImpl()) ? layer_sharded_params_ : layer_replicated_params_)
          .back()
          .push_back(p);
  }
  foreach_reductions_ = device_.is_cuda();
  std::map<const void*, int64_t> group_of;
  for (size_t g = 0; g < layer_names_.size(); ++g) {
    for (const auto* list : {&layer_sharded_params_[g], &layer_replicated_params_[g]})
      for (const auto& p : *list) group_of[p.unsafeGetTensorImpl()] = static_cast<int64_t>(g);
  }
  const auto P = static_cast<int64_t>(params.size());
  auto membership = torch::zeros({static_cast<int64_t>(layer_names_.size()), P}, torch::kFloat);  // (G, P)
  auto mask = torch::zeros({P}, torch::kFloat);                                                  // (P)
  for (int64_t i = 0; i < P; ++i) {
    auto it = group_of.find(params[static_cast<size_t>(i)].unsafeGetTensorImpl());
    KEEL_CHECK(it != group_of.end(), "parameter " << i << " is in no layer group");
    membership[it->second][i] = 1.0f;
    if (param_sharded_[static_cast<size_t>(i)]) mask[i] = 1.0f;
  }
  param_groups_ = membership.to(device_);
  param_sharded_mask_ = mask.to(device_);
}

torch::Tensor StepSignalReader::global_squares(torch::Tensor sharded, const torch::Tensor& replicated) {
  if (tp_.size() > 1) parallel::all_reduce(tp_, sharded, parallel::ReduceOp::kSum);
  return sharded + replicated;
}

StepSignals StepSignalReader::read(int64_t step, const torch::Tensor& mean_loss, double update_ratio) {
  auto host = torch::cat({mean_loss.reshape({1}), layer_grad_squares()}).to(torch::kCPU, torch::kDouble);  // (1 + G)
  return signals_from(step, host, update_ratio);
}

StepSignals StepSignalReader::read(int64_t step, const torch::Tensor& mean_loss, double update_ratio,
                                   const torch::Tensor& param_squares) {
  const auto squares = param_squares.to(torch::kFloat);  // (P)
  auto layers = global_squares(param_groups_.mv(squares * param_sharded_mask_),
                               param_groups_.mv(squares * (1 - param_sharded_mask_)));  // (G)
  auto host = torch::cat({mean_loss.reshape({1}).to(torch::kFloat), layers}).to(torch::kCPU, torch::kDouble);
  return signals_from(step, host, update_ratio);
}

double StepSignalReader::clip_factor(double grad_norm, double clip) {
  if (clip <= 0 || grad_norm <= clip) return 1.0;
  return clip / (grad_norm + 1e-6);
}

StepSignals StepSignalReader::signals_from(int64_t step, const torch::Tensor& host, double update_ratio) const {
  const double* values = host.data_ptr<double>();
  StepSignals signals;
  signals.step = step;
  signals.loss = values[0];
  double grad_sq = 0;
  for (size_t i = 0; i < layer_names_.size(); ++i) {
    grad_sq += values[i + 1];
    signals.layer_grad_norms.push_back(std::sqrt(values[i + 1]));
  }
  signals.grad_norm = std::sqrt(grad_sq);
  signals.grads_finite = std::isfinite(signals.grad_norm);
  signals.update_ratio = update_ratio;
  return signals;
}

torch::Tensor StepSignalReader::layer_grad_squares() {
  const auto float_options = torch::TensorOptions().dtype(torch::kFloat).device(device_);
  if (foreach_reductions_) {
    // One multi-tensor norm over every gradient, then a per-group sum (a handful of kernels).
    std::vector<torch::Tensor> grads;
    bool all_defined = true;
    for (const auto& p : params_) {
      grads.push_back(p.grad().defined() ? p.grad() : torch::Tensor());
      all_defined = all_defined && p.grad().defined();
    }
    if (all_defined) {
      auto squares = torch::stack(at::_foreach_norm(grads)).to(torch::kFloat).pow(2);  // (P)
      // (G, P) x (P): deterministic, unlike an atomic index_add_.
      return global_squares(param_groups_.mv(squares * param_sharded_mask_),
                            param_groups_.mv(squares * (1 - param_sharded_mask_)));
    }
  }
  auto squares_of = [&](const std::vector<std::vector<torch::Tensor>>& groups) {
    std::vector<torch::Tensor> per_group;
    for (const auto& group : groups) {
      std::vector<torch::Tensor> squares;
      for (const auto& p : group) {
        if (p.grad().defined()) squares.push_back(p.grad().to(torch::kFloat).pow(2).sum());
      }
      per_group.push_back(squares.empty() ? torch::zeros({}, float_options) : torch::stack(squares).sum());
    }
    return torch::stack(per_group);  // (G)
  };
  return global_squares(squares_of(layer_sharded_params_), squares_of(layer_replicated_params_));
}

void StepSignalReader::clip_gradients(double grad_norm, double clip) {
  const double factor = clip_factor(grad_norm, clip);
  if (factor == 1.0) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params_) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (!grads.empty()) at::_foreach_mul_(grads, factor);  // one multi-tensor kernel on CUDA; per tensor on CPU
}

double StepSignalReader::step_and_measure_update(AdamW& optimizer, double lr,
                                                 const std::function<void()>& after_step) {
  torch::NoGradGuard no_grad;
  if (update_snapshot_.empty()) {
    for (const auto& p : params_) update_snapshot_.push_back(torch::empty_like(p));
  }
  torch::Tensor sums;  // (2): delta^2, weight^2 summed over the whole model
  if (foreach_reductions_) {
    compat::foreach_copy_(update_snapshot_, params_);
    auto weight_sq = torch::stack(at::_foreach_norm(update_snapshot_)).to(torch::kFloat).pow(2);  // (P)
    optimizer.step(lr);
    if (after_step) after_step();
    at::_foreach_sub_(update_snapshot_, params_);
    auto delta_sq = torch::stack(at::_foreach_norm(update_snapshot_)).to(torch::kFloat).pow(2);  // (P)
    auto both = torch::stack({delta_sq, weight_sq});                                            // (2, P)
    sums = global_squares((both * param_sharded_mask_).sum(1), (both * (1 - param_sharded_mask_)).sum(1))
               .to(torch::kCPU, torch::kDouble);
  } else {
    for (size_t i = 0; i < params_.size(); ++i) update_snapshot_[i].copy_(params_[i]);
    optimizer.step(lr);
    if (after_step) after_step();
    // (delta^2, weight^2) of split and of replicated tensors, summed over the whole model.
    auto zero = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
    torch::Tensor sums_sharded[2] = {zero, zero}, sums_replicated[2] = {zero, zero};
    for (size_t i = 0; i < params_.size(); ++i) {
      torch::Tensor* part = param_sharded_[i] ? sums_sharded : sums_replicated;
      part[1] = part[1] + update_snapshot_[i].pow(2).sum().to(torch::kFloat);
      part[0] = part[0] + update_snapshot_[i].sub_(params_[i]).pow(2).sum().to(torch::kFloat);
    }
    sums = global_squares(torch::stack({sums_sharded[0], sums_sharded[1]}),
                          torch::stack({sums_replicated[0], sums_replicated[1]}))
               .to(torch::kCPU, torch::kDouble);
  }
  const double denominator = std::sqrt(sums[1].item<double>());
  return denominator > 0 ? std::sqrt(sums[0].item<double>()) / denominator : 0.0;
}

}  // namespace keel
