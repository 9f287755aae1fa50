// Per-layer decoding state for generation (implements model/attention_cache.h):
//   softmax attention: key and value buffers (B, H, capacity, D), allocated once at the first append
//     for the whole generation (memory grows linearly with the sequence length);
//   linear attention: the recurrent state (B, H, D, D) fp32 (fixed size, model/linear_attention.h).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "model/attention_cache.h"

namespace keel {

class LayerCache : public AttentionCache {
 public:
  // capacity: the most positions the softmax buffers will hold.
  explicit LayerCache(int64_t capacity) : capacity_(capacity) {}

  std::pair<torch::Tensor, torch::Tensor> append(const torch::Tensor& k, const torch::Tensor& v) override;
  torch::Tensor& linear_state() override { return state_; }

  int64_t length() const { return length_; }  // positions held (softmax)
  int64_t bytes() const;                      // memory of the buffers / state

 private:
  int64_t capacity_;
  int64_t length_ = 0;
  torch::Tensor keys_, values_;  // (B, H, capacity, D)
  torch::Tensor state_;          // (B, H, D, D)
};

// One LayerCache per block of a model.
class DecodeCache {
 public:
  DecodeCache(int64_t num_layers, int64_t capacity);
  std::vector<AttentionCache*> pointers();
  int64_t bytes() const;  // all layers

 private:
  std::vector<std::unique_ptr<LayerCache>> layers_;
};

}  // namespace keel
