// GradientBucketer: data-parallel gradient averaging in flat buckets, overlapped with backward on
// GPUs (the DDP scheme), synchronous on CPUs. Built on the tensor collectives of torch_adapter.h.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <mutex>
#include <vector>

#include "parallel/communicator.h"

namespace keel::parallel {

// Averages the gradients of `params` over the data-parallel communicator, in flat buckets of about
// `bucket_mb` MiB (one dtype and device per bucket; parameters assigned in reverse order, the order
// backward produces their gradients; parameters without requires_grad are skipped).
//
// CPU / MPI: call all_reduce_gradients() after backward (synchronous).
// GPU / NCCL: register a hook per parameter that calls on_grad_ready(i, grad); the bucket's
// all-reduce is launched as soon as all its gradients are in, while backward continues, and buckets
// launch strictly in bucket order (every rank issues the same collectives in the same order, even if
// its gradients arrive in another order). Then call finish() after backward: it launches what is
// left and writes the averaged values into each parameter's .grad (on the compute stream, ordered
// after the collectives by NcclCommunicator's events). Tensor hooks see the gradient before it is
// accumulated into .grad, hence the overload taking `grad`; finish() overwrites .grad, so with
// gradient accumulation register the hooks only for the last micro-batch.
// A parameter with no gradient on this rank contributes zeros.
class GradientBucketer {
 public:
  GradientBucketer(Communicator& dp, std::vector<torch::Tensor> params, double bucket_mb);

  size_t num_buckets() const { return buckets_.size(); }
  // Parameter indices of bucket `b`, in the order they sit in the flat buffer.
  const std::vector<size_t>& bucket_params(size_t b) const { return buckets_.at(b).params; }

  // Parameter `index`'s gradient is final: copy it (params[index].grad(), or `grad`) into its bucket
  // and launch every complete bucket that is next in order. Safe to call from an autograd hook.
  void on_grad_ready(size_t index);
  void on_grad_ready(size_t index, const torch::Tensor& grad);
  // Launches the remaining buckets, waits for them and writes the averages into .grad; resets the
  // bookkeeping for the next step.
  void finish();
  // The synchronous CPU path: every gradient is taken from .grad, reduced and written back.
  void all_reduce_gradients() { finish(); }

 private:
  struct Bucket {
    torch::Tensor flat;
    std::vector<size_t> params;
    std::vector<int64_t> offsets;
    size_t ready = 0;
    bool launched = false;
  };
  torch::Tensor slice(size_t index);
  void mark_ready_locked(size_t index, const torch::Tensor& grad);
  void launch_locked(size_t b);

  Communicator& comm_;
  std::vector<torch::Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // npos when the parameter is skipped
  std::vector<size_t> slot_of_;    // position in its bucket's params/offsets
  std::vector<bool> ready_;
  size_t next_launch_ = 0;
  std::mutex mutex_;
};

}  // namespace keel::parallel
