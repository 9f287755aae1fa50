// Next-token choice from the logits of the last position: greedy (argmax) or sampling with a
// temperature, top-k and top-p (nucleus) filtering. Sampling uses its own seeded CPU generator, so
// a seed gives the same tokens on any device (up to the logits' own numerics).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace keel {

struct SamplerOptions {
  bool greedy = false;       // argmax; also when temperature == 0
  double temperature = 1.0;  // logits / temperature before softmax
  int64_t top_k = 0;         // keep the k most likely tokens; 0 = all
  double top_p = 1.0;        // keep the smallest set whose probability reaches p; 1 = all
  uint64_t seed = 1337;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);
  // logits: (V) of one position, any device/dtype -> the chosen token id.
  int64_t next(const torch::Tensor& logits);
  // The filtered, renormalised distribution sampling draws from. (V) -> (V) fp32 on the CPU.
  torch::Tensor distribution(const torch::Tensor& logits) const;
  bool greedy() const { return options_.greedy || options_.temperature <= 0.0; }

 private:
  SamplerOptions options_;
  at::Generator generator_;
};

}  // namespace keel
