// AdamW implementation (see adamw.h).
#include "optim/adamw.h"

#include <cmath>

#include "common/check.h"
#include "model/torch_compat.h"

namespace keel {

AdamW::AdamW(std::vector<std::string> names, std::vector<torch::Tensor> params, std::vector<bool> decay,
             AdamWOptions options)
    : names_(std::move(names)), params_(std::move(params)), decay_(std::move(decay)), options_(options) {
  KEEL_CHECK(names_.size() == params_.size() && params_.size() == decay_.size(), "AdamW: mismatched inputs");
  KEEL_CHECK(!options_.independent_decay || options_.peak_lr > 0, "AdamW: independent decay needs a peak LR > 0");
  // Both update paths apply lr_t * decay_per_lr_: for independent decay that is (lr_t / peak) * wd.
  decay_per_lr_ = options_.independent_decay ? options_.weight_decay / options_.peak_lr : options_.weight_decay;
  for (const auto& p : params_) {
    exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
  }
}

void AdamW::reset() {
  torch::NoGradGuard no_grad;
  for (auto& m : exp_avg_) m.zero_();
  for (auto& v : exp_avg_sq_) v.zero_();
  step_count_ = 0;
}

void AdamW::zero_grad() {
  std::vector<torch::Tensor> grads;  // one multi-tensor kernel on CUDA instead of one per parameter
  for (auto& p : params_) {
    if (p.grad().defined()) grads.push_back(p.mutable_grad());
  }
  if (!grads.empty()) at::_foreach_zero_(grads);
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_count_;
  const bool can_fuse = compat::kHasFusedAdamW && options_.fused && !params_.empty() && params_[0].is_cuda();
  if (can_fuse) {
    step_fused(lr);
  } else {
    step_foreach(lr);
  }
}

void AdamW::step_foreach(double lr) {
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_count_));
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_count_));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    const auto& grad = p.grad();
    if (!grad.defined()) continue;
    if (decay_[i] && decay_per_lr_ != 0.0) p.mul_(1.0 - lr * decay_per_lr_);
    exp_avg_[i].mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    auto denom = (exp_avg_sq_[i].sqrt() / bias_correction2_sqrt).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -step_size);
  }
}

void AdamW::step_fused(double lr) {
#if KEEL_TORCH_AT_LEAST(2, 0)
  // The kernel reads the step count (already incremented for this step) for bias correction, as
  // torch.optim.AdamW does before calling it; it only reads it, so every parameter shares one
  // device scalar (one fill per step instead of a tensor per parameter).
  if (!step_tensor_.defined() || step_tensor_.device() != params_[0].device())
    step_tensor_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(params_[0].device()));
  step_tensor_.fill_(static_cast<double>(step_count_));
  // The fused kernel takes one weight decay per call: run it once per decay group.
  for (bool with_decay : {true, false}) {
    std::vector<torch::Tensor> params, grads, avgs, avg_sqs, steps;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (decay_[i] != with_decay || !params_[i].grad().defined()) continue;
      params.push_back(params_[i]);
      grads.push_back(params_[i].grad());
      avgs.push_back(exp_avg_[i]);
      avg_sqs.push_back(exp_avg_sq_[i]);
      steps.push_back(step_tensor_);
    }
    if (params.empty()) continue;
    at::_fused_adamw_(params, grads, avgs, avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, options_.beta1,
                      options_.beta2, with_decay ? decay_per_lr_ : 0.0, options_.eps,
                      /*amsgrad=*/false, /*maximize=*/false);
  }
#else
  step_foreach(lr);
#endif
}

}  // namespace keel
