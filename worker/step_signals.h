// What the stability monitor reads from one step, global over the whole model: the loss, per layer
// group the gradient norm (split tensors' squares summed over TP), all in ONE host read (the
// step's only wait for the GPU before the update: the verdict decides whether and how the update
// is applied); then clipping to a global norm, and the update-to-weight ratio
// ||W_after - W_before|| / ||W_before|| of the optimizer step, the next step's signal. On CUDA the reductions are multi-tensor (foreach) kernels; the CPU keeps
// per-tensor reductions, bit for bit as before.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "model/gpt.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "stability/stability_monitor.h"

namespace keel {

class StepSignalReader {
 public:
  // `params`: the optimizer's parameters in order; `sharded[i]`: parameter i is split over TP.
  // `tp`: the tensor-parallel group (size 1 when none). Borrowed; outlives this.
  StepSignalReader(Gpt& model, const std::vector<torch::Tensor>& params, const std::vector<bool>& sharded,
                     parallel::Communicator& tp, torch::Device device);

  const std::vector<std::string>& layer_names() const { return layer_names_; }

  // Step `step`'s signals: `mean_loss` () float on the device (already averaged over DP), the
  // grad norms from the gradients in .grad (already averaged over DP), `update_ratio` of the last
  // applied update. One device-to-host copy.
  StepSignals read(int64_t step, const torch::Tensor& mean_loss, double update_ratio);
  // The same from `param_squares` (P): each parameter's squared gradient norm, already summed over
  // DP (a ZeRO-2 run keeps no whole gradient); split tensors' squares are summed over TP here.
  StepSignals read(int64_t step, const torch::Tensor& mean_loss, double update_ratio,
                   const torch::Tensor& param_squares);
  // What clipping to `clip` multiplies the gradients by: 1 when clip <= 0 or the norm is below it.
  static double clip_factor(double grad_norm, double clip);
  // Scales every gradient so that the global norm `grad_norm` becomes `clip` (no-op when clip <= 0
  // or the norm is below it).
  void clip_gradients(double grad_norm, double clip);
  // optimizer.step(lr), then `after_step` (a sharded optimizer's all-gather of the updated
  // parameters), measuring the global update-to-weight ratio (one host read).
  double step_and_measure_update(AdamW& optimizer, double lr, const std::function<void()>& after_step = {});

 private:
  // (G) float on the device: per layer group, the squared grad norm over the whole model.
  torch::Tensor layer_grad_squares();
  // (1 + G) host doubles -> the step's signals.
  StepSignals signals_from(int64_t step, const torch::Tensor& host, double update_ratio) const;
  // Squared norms summed over the whole model: split tensors' squares are summed over TP.
  // sharded/replicated: (...) float sums on this rank -> the global sums.
  torch::Tensor global_squares(torch::Tensor sharded, const torch::Tensor& replicated);

  parallel::Communicator& tp_;
  torch::Device device_;
  std::vector<torch::Tensor> params_;
  std::vector<bool> param_sharded_;  // by optimizer parameter index
  std::vector<std::string> layer_names_;
  std::vector<std::vector<torch::Tensor>> layer_sharded_params_;     // split over TP
  std::vector<std::vector<torch::Tensor>> layer_replicated_params_;  // identical on every TP rank
  // Per parameter its layer group (grad norms) and 1 if split over TP, as device tensors (the CUDA
  // foreach path and the per-parameter squares of ZeRO-2).
  bool foreach_reductions_ = false;
  torch::Tensor param_groups_;        // (G, P) float: 1 where parameter p is in layer group g
  torch::Tensor param_sharded_mask_;  // (P) float
  std::vector<torch::Tensor> update_snapshot_;  // parameters before the update
};

}  // namespace keel
