// Threshold-based dynamic activation (TDA; "First Activations Matter: Training-Free Methods for
// Dynamic Activation in Large Language Models", arXiv 2408.11393) for generation.
//
// During the prefill every MLP neuron j of layer l gets a score: the L2 norm of its activation over
// the prompt tokens, s_lj = ||a_lj[0..P)||_2. Decoding then uses, per layer, only the neurons that
// matter for this prompt:
//   threshold mode: keep j when s_lj >= threshold * mean_j(s_lj)  (a per-layer threshold relative
//                   to the layer's mean score; threshold 0 keeps every neuron, i.e. dense);
//   sparsity mode:  keep the round((1 - sparsity) * hidden) highest-scoring neurons of each layer.
// The sliced MLP multiplies only the kept rows of c_fc (w_gate, w_up) and columns of c_proj, which
// equals the dense MLP with the dropped neurons' activations set to zero.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/gpt.h"

namespace keel {

struct TdaOptions {
  double threshold = -1;  // >= 0: threshold mode (relative to the layer's mean score)
  double sparsity = -1;   // in [0, 1): sparsity mode
  bool enabled() const { return threshold >= 0 || sparsity >= 0; }
};

// Scores of one layer's neurons from its prefill activations (B, T, hidden) -> (hidden) fp32
// (the norm over every token of the batch).
torch::Tensor tda_neuron_scores(const torch::Tensor& activations);
// Sorted int64 indices of the neurons to keep, (k).
torch::Tensor tda_select(const torch::Tensor& scores, const TdaOptions& options);

// The kept neurons' weights of one MLP, gathered once after the prefill.
class SlicedMlp {
 public:
  // activation: the model's MLP activation (gelu | relu | swiglu); keep: (k) int64 neuron indices.
  SlicedMlp(Mlp& mlp, const std::string& activation, const torch::Tensor& keep);
  torch::Tensor operator()(const torch::Tensor& x) const;  // (B, t, C) -> (B, t, C)
  int64_t kept() const { return kept_; }

 private:
  std::string activation_;
  int64_t kept_;
  torch::Tensor fc_w_, fc_b_, up_w_, up_b_, proj_w_, proj_b_;  // fc = c_fc or w_gate
};

// The dense MLP with the activations of the neurons not in `keep` set to zero: what the sliced MLP
// must equal. (B, t, C) -> (B, t, C)
torch::Tensor masked_dense_mlp(Mlp& mlp, const std::string& activation, const torch::Tensor& x,
                               const torch::Tensor& keep);

// Per-layer sliced MLPs for one prompt.
struct TdaPlan {
  std::vector<std::shared_ptr<SlicedMlp>> layers;  // nullptr: every neuron kept (the dense MLP)
  std::vector<double> layer_sparsity;              // fraction of neurons dropped per layer
  double sparsity = 0;                             // over all layers
  // DecodeHooks::mlp entries.
  std::vector<std::function<torch::Tensor(const torch::Tensor&)>> hooks() const;
};

// Builds the plan from the prefill's trace (its mlp_activations, one per layer).
TdaPlan plan_tda(Gpt& model, const ForwardTrace& prefill, const TdaOptions& options);

}  // namespace keel
