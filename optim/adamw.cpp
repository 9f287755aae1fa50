// AdamW implementation (see adamw.h).
#include "optim/adamw.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "model/torch_compat.h"

namespace keel {

AdamW::AdamW(std::vector<std::string> names, std::vector<torch::Tensor> params, std::vector<bool> decay,
             AdamWOptions options, std::optional<FlatRange> owned)
    : names_(std::move(names)), params_(std::move(params)), decay_(std::move(decay)), options_(options),
      owned_(owned) {
  KEEL_CHECK(names_.size() == params_.size() && params_.size() == decay_.size(), "AdamW: mismatched inputs");
  KEEL_CHECK(!options_.independent_decay || options_.peak_lr > 0, "AdamW: independent decay needs a peak LR > 0");
  // Both update paths apply lr_t * decay_per_lr_: for independent decay that is (lr_t / peak) * wd.
  decay_per_lr_ = options_.independent_decay ? options_.weight_decay / options_.peak_lr : options_.weight_decay;
  for (const auto& p : params_) {
    flat_offsets_.push_back(flat_size_);
    flat_size_ += p.numel();
  }
  if (!owned_) {
    for (const auto& p : params_) {
      exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    }
    return;
  }
  const FlatRange r = *owned_;
  KEEL_CHECK(0 <= r.begin && r.begin <= r.end && r.end <= flat_size_,
             "AdamW: owned range [" << r.begin << ", " << r.end << ") outside the " << flat_size_ << " parameters");
  KEEL_CHECK(!params_.empty(), "AdamW: a sharded optimizer needs parameters");
  const auto tensor_options = params_[0].options();
  flat_exp_avg_ = torch::zeros({r.size()}, tensor_options);     // (owned)
  flat_exp_avg_sq_ = torch::zeros({r.size()}, tensor_options);  // (owned)
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    KEEL_CHECK(p.is_contiguous() && p.scalar_type() == params_[0].scalar_type() && p.device() == params_[0].device(),
               "AdamW: sharding needs contiguous parameters of one dtype and device ('" << names_[i] << "' is not)");
    const int64_t begin = std::max(r.begin, flat_offsets_[i]);
    const int64_t end = std::min(r.end, flat_offsets_[i] + p.numel());
    const int64_t len = std::max<int64_t>(0, end - begin);
    segments_.emplace_back(len > 0 ? begin - flat_offsets_[i] : 0, len);
    owned_offsets_.push_back(len > 0 ? begin - r.begin : 0);
    exp_avg_.push_back(flat_exp_avg_.narrow(0, owned_offsets_.back(), len));
    exp_avg_sq_.push_back(flat_exp_avg_sq_.narrow(0, owned_offsets_.back(), len));
  }
}

int64_t AdamW::state_bytes() const {
  int64_t bytes = 0;
  for (const auto* moments : {&exp_avg_, &exp_avg_sq_})
    for (const auto& m : *moments) bytes += m.numel() * static_cast<int64_t>(m.element_size());
  return bytes;
}

torch::Tensor& AdamW::moment(int which, size_t i) {
  KEEL_CHECK(which == 0 || which == 1, "AdamW: moment " << which);
  return (which == 0 ? exp_avg_ : exp_avg_sq_).at(i);
}

const torch::Tensor& AdamW::moment(int which, size_t i) const {
  KEEL_CHECK(which == 0 || which == 1, "AdamW: moment " << which);
  return (which == 0 ? exp_avg_ : exp_avg_sq_).at(i);
}

std::pair<int64_t, int64_t> AdamW::segment(size_t i) const {
  if (!owned_) return {0, params_.at(i).numel()};
  return segments_.at(i);
}

torch::Tensor AdamW::param_part(size_t i) const {
  if (!owned_) return params_[i];
  return params_[i].view(-1).narrow(0, segments_[i].first, segments_[i].second);
}

void AdamW::set_owned_gradient(torch::Tensor flat_grad) {
  KEEL_CHECK(owned_ || !flat_grad.defined(), "AdamW: an owned gradient needs a sharded optimizer");
  KEEL_CHECK(!flat_grad.defined() || flat_grad.numel() == owned_->size(),
             "AdamW: the owned gradient has " << flat_grad.numel() << " elements, the range " << owned_->size());
  owned_grad_ = std::move(flat_grad);
}

torch::Tensor AdamW::grad_part(size_t i) const {
  if (owned_grad_.defined()) return owned_grad_.narrow(0, owned_offsets_[i], segments_[i].second);
  const auto& grad = params_[i].grad();
  if (!owned_) return grad;
  return grad.reshape(-1).narrow(0, segments_[i].first, segments_[i].second);
}

bool AdamW::has_part(size_t i) const {
  if (owned_grad_.defined()) return segments_[i].second > 0;
  return params_[i].grad().defined() && (!owned_ || segments_[i].second > 0);
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
    if (!has_part(i)) continue;
    auto p = param_part(i);  // the whole parameter, or (sharded) a view of its owned segment
    const auto grad = grad_part(i);
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
      if (decay_[i] != with_decay || !has_part(i)) continue;
      params.push_back(param_part(i));
      grads.push_back(grad_part(i));
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
