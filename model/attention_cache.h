// The per-layer state that incremental decoding carries from one forward call to the next.
// The model only reads and writes it through this interface; generation/kv_cache.h owns the storage
// (preallocated key/value buffers for softmax attention, a fixed-size matrix for linear attention).
#pragma once

#include <torch/torch.h>

#include <utility>

namespace keel {

class AttentionCache {
 public:
  virtual ~AttentionCache() = default;
  // Softmax attention: stores the keys and values (B, H, t, D) of the next t positions and returns
  // those of every position so far, (B, H, P + t, D).
  virtual std::pair<torch::Tensor, torch::Tensor> append(const torch::Tensor& k, const torch::Tensor& v) = 0;
  // Linear attention: the recurrent state (B, H, D, D), fp32; undefined before the first call. The
  // attention replaces it after each call.
  virtual torch::Tensor& linear_state() = 0;
};

}  // namespace keel
