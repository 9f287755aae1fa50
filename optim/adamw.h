// AdamW with decoupled weight decay, written out so that Keel owns its state: the stability monitor
// can skip an update without touching moments or step counts, and checkpoints store the moments
// under the parameter names (optimizer.safetensors; per DP rank when sharded) for exact resume.
// Matches torch.optim.AdamW (amsgrad=False). On CUDA with LibTorch >= 2.0 the fused multi-tensor
// kernel does the same arithmetic in one launch.
//
// Sharded (ZeRO-1, parallel.shard_optimizer): the parameters, each flattened and concatenated in
// order, form one flat space of flat_size() elements; an optimizer given an owned FlatRange keeps
// the moments of that range only (one contiguous buffer, viewed per parameter segment) and step()
// updates only those elements, with the same element-wise arithmetic as the whole tensors (so a
// sharded update is bit-identical to the unsharded one). Putting the other ranks' segments back is
// the caller's (worker/optimizer_sharding.h). A checkpoint holds what each rank owns: the flat
// moments of the owned range (checkpoint_torch/optimizer_shard_files.h), read back through
// segment() and moment() into whatever range this optimizer owns.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "optim/flat_range.h"

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
  // `decay[i]` says whether parameter i gets weight decay. `owned`: the flat range this optimizer
  // updates (sharded); none = every parameter, whole.
  AdamW(std::vector<std::string> names, std::vector<torch::Tensor> params, std::vector<bool> decay,
        AdamWOptions options, std::optional<FlatRange> owned = std::nullopt);

  // One update with learning rate `lr` from the current .grad of every parameter.
  void step(double lr);
  void zero_grad();

  int64_t step_count() const { return step_count_; }
  bool sharded() const { return owned_.has_value(); }
  // Elements of all parameters together; where parameter i starts in that flat space.
  int64_t flat_size() const { return flat_size_; }
  int64_t flat_offset(size_t i) const { return flat_offsets_.at(i); }
  const std::vector<int64_t>& flat_offsets() const { return flat_offsets_; }
  // The owned range (the whole space when not sharded).
  FlatRange owned_range() const { return owned_.value_or(FlatRange{0, flat_size_}); }
  // Sharded: the flat buffer of moment `which` over the owned range (owned_range().size()).
  const torch::Tensor& flat_moment(int which) const { return which == 0 ? flat_exp_avg_ : flat_exp_avg_sq_; }
  // Bytes of optimizer state this process holds (both moments).
  int64_t state_bytes() const;
  // Moment `which` (0 = exp_avg, 1 = exp_avg_sq) of parameter i as this optimizer holds it: the
  // whole tensor (not sharded) or a 1-D view of its owned segment (sharded; possibly empty). Loading
  // a checkpoint copies into it in place.
  torch::Tensor& moment(int which, size_t i);
  const torch::Tensor& moment(int which, size_t i) const;
  // Parameter i's owned segment: (first element within the flattened parameter, length); the whole
  // parameter (0, numel) when not sharded.
  std::pair<int64_t, int64_t> segment(size_t i) const;
  // Sharded (ZeRO-2): step() reads the owned range's gradient from `flat_grad` (owned_range().size()
  // elements) instead of each parameter's .grad; an undefined tensor goes back to .grad.
  void set_owned_gradient(torch::Tensor flat_grad);
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<torch::Tensor>& params() const { return params_; }
  std::vector<torch::Tensor>& exp_avg() { return exp_avg_; }
  std::vector<torch::Tensor>& exp_avg_sq() { return exp_avg_sq_; }
  // Restores the step count after the moments were loaded in place.
  void set_step_count(int64_t step_count) { step_count_ = step_count; }
  // Back to the state before the first step: moments zero (in place), step count 0.
  void reset();
  // What step() updates of parameter i: the whole tensor, or (sharded) 1-D views of its owned
  // segment and of that segment's gradient (ZeRO-2: in the owned gradient); has_part: a gradient
  // exists and something is owned.
  torch::Tensor param_part(size_t i) const;
  torch::Tensor grad_part(size_t i) const;
  bool has_part(size_t i) const;

 private:
  void step_foreach(double lr);
  void step_fused(double lr);

  std::vector<std::string> names_;
  std::vector<torch::Tensor> params_;
  std::vector<bool> decay_;
  AdamWOptions options_;
  double decay_per_lr_ = 0.0;  // the decay factor both paths multiply by lr_t (see AdamWOptions)
  // Not sharded: whole-shaped moments. Sharded: 1-D views of the owned segments into the flat
  // buffers below (empty where a parameter has no owned element).
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  int64_t step_count_ = 0;
  // Sharding: the owned range, each parameter's flat offset, its owned segment (offset within the
  // parameter, length), and the flat moment buffers of the owned range.
  std::optional<FlatRange> owned_;
  int64_t flat_size_ = 0;
  std::vector<int64_t> flat_offsets_;
  std::vector<std::pair<int64_t, int64_t>> segments_;
  torch::Tensor flat_exp_avg_, flat_exp_avg_sq_;
  torch::Tensor owned_grad_;  // ZeRO-2: the owned range's gradient (else undefined: .grad is read)
  std::vector<int64_t> owned_offsets_;  // where parameter i's segment starts in the owned range
  torch::Tensor step_tensor_;  // fused path: the step count as a device scalar, read by the kernel
};

}  // namespace keel
