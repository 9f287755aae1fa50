// AdamW with decoupled weight decay, written out so that Keel owns its state: the stability monitor
// can skip an update without touching moments or step counts, and checkpoints store the moments
// under the parameter names (optimizer.safetensors) for exact resume.
// Matches torch.optim.AdamW (amsgrad=False). On CUDA with LibTorch >= 2.0 the fused multi-tensor
// kernel does the same arithmetic in one launch.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace keel {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  // false (coupled, PyTorch's AdamW): each step multiplies decayed weights by 1 - lr_t * weight_decay.
  // true (independent of the LR, Wortsman et al. 2023, arXiv 2309.14322): by
  // 1 - (lr_t / peak_lr) * weight_decay, so the decay follows the schedule's shape but not the peak
  // LR, and an LR sweep does not also sweep the decay.
  bool independent_decay = false;
  double peak_lr = 1e-3;  // independent_decay's reference
  bool fused = true;  // use the fused CUDA kernel where available
};

class AdamW {
 public:
  // `decay[i]` says whether parameter i gets weight decay.
  AdamW(std::vector<std::string> names, std::vector<torch::Tensor> params, std::vector<bool> decay,
        AdamWOptions options);

  // One update with learning rate `lr` from the current .grad of every parameter.
  void step(double lr);
  void zero_grad();

  int64_t step_count() const { return step_count_; }
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<torch::Tensor>& params() const { return params_; }
  std::vector<torch::Tensor>& exp_avg() { return exp_avg_; }
  std::vector<torch::Tensor>& exp_avg_sq() { return exp_avg_sq_; }
  // Restores the step count after the moments were loaded in place.
  void set_step_count(int64_t step_count) { step_count_ = step_count; }
  // Back to the state before the first step: moments zero (in place), step count 0.
  void reset();

 private:
  void step_foreach(double lr);
  void step_fused(double lr);

  std::vector<std::string> names_;
  std::vector<torch::Tensor> params_;
  std::vector<bool> decay_;
  AdamWOptions options_;
  double decay_per_lr_ = 0.0;  // the decay factor both paths multiply by lr_t (see AdamWOptions)
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  int64_t step_count_ = 0;
  torch::Tensor step_tensor_;  // fused path: the step count as a device scalar, read by the kernel
};

}  // namespace keel
