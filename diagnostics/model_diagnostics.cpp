// Model diagnostics on a probe batch (see model_diagnostics.h).
#include "diagnostics/model_diagnostics.h"

#include <ATen/core/Generator.h>

#include <cmath>
#include <mutex>

#include "common/check.h"
#include "diagnostics/activation_sparsity.h"
#include "diagnostics/attention_entropy.h"
#include "diagnostics/layer_linearity.h"
#include "parallel/torch_adapter.h"

namespace keel {
namespace {

// Root mean square as a 0-dim float64 tensor on t's device (no host read).
torch::Tensor rms(const torch::Tensor& t) {
  auto options = torch::TensorOptions().device(t.device()).dtype(torch::kDouble);
  return t.numel() == 0 ? torch::zeros({}, options) : t.detach().to(torch::kDouble).pow(2).mean().sqrt();
}

// Restores the model's training flag and the global CPU generator state on scope exit.
class StateGuard {
 public:
  explicit StateGuard(GptImpl& model) : model_(model), was_training_(model.is_training()) {
    auto generator = at::globalContext().defaultGenerator(at::kCPU);
    std::lock_guard<std::mutex> lock(generator.mutex());
    rng_state_ = generator.get_state();
  }
  ~StateGuard() {
    auto generator = at::globalContext().defaultGenerator(at::kCPU);
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(rng_state_);
    }
    model_.train(was_training_);
  }
  StateGuard(const StateGuard&) = delete;
  StateGuard& operator=(const StateGuard&) = delete;

 private:
  GptImpl& model_;
  bool was_training_;
  torch::Tensor rng_state_;
};

// Tensor parallelism: this rank computed the entropies of its heads (rank r holds heads
// r*H/tp .. (r+1)*H/tp - 1, model/tensor_parallel_layout.h). Gathers every rank's values so each
// rank holds all H heads in head order: (2, H/tp) -> (2, H), on the device the backend wants
// (NCCL: the model's CUDA device; the probe's device is the model's).
torch::Tensor gather_heads(const torch::Tensor& local, const TensorParallelPlacement& tp) {
  if (!tp.split()) return local;
  auto gathered = parallel::all_gather(*tp.comm, local.contiguous());  // (tp, 2, H/tp)
  return gathered.permute({1, 0, 2}).reshape({2, -1});
}

// Tensor parallelism: each rank counted its hidden/tp MLP units; the sums over ranks are the
// counts of the whole activation tensor. (3) int64, summed in place.
torch::Tensor sum_counts(torch::Tensor local, const TensorParallelPlacement& tp) {
  if (tp.split()) parallel::all_reduce(*tp.comm, local, parallel::ReduceOp::kSum);
  return local;
}

}  // namespace

DiagnosticsReport compute_diagnostics(GptImpl& model, const torch::Tensor& probe_tokens,
                                      const DiagnosticsConfig& config) {
  KEEL_CHECK(probe_tokens.dim() == 2, "probe_tokens must be (B, T), got " << probe_tokens.sizes());
  StateGuard guard(model);
  torch::NoGradGuard no_grad;
  model.eval();

  ForwardTrace trace;
  model.forward(probe_tokens, &trace);
  const size_t L = trace.block_inputs.size();
  KEEL_CHECK(trace.block_outputs.size() == L && trace.attention_outputs.size() == L &&
                 trace.mlp_outputs.size() == L && trace.mlp_activations.size() == L,
             "incomplete forward trace");

  // Block inputs/outputs, sublayer outputs and the embedding output are whole on every TP rank
  // (row-parallel outputs are all-reduced inside the forward pass); attention heads and MLP
  // hidden units are this rank's slice and are combined over the TP group below. Every TP rank
  // must call this function (collectives), and all then hold the same report.
  const TensorParallelPlacement& tp = model.tensor_parallel();

  // Every value stays on the device until one copy at the end: a host read per value (there are
  // several per layer) would stall the GPU each time.
  std::vector<torch::Tensor> entropy_rows, count_rows, rms_rows, max_logit_rows;
  for (size_t l = 0; l < L; ++l) {
    auto block = model.blocks[l]->as<BlockImpl>();
    KEEL_CHECK(block != nullptr, "blocks[" << l << "] is not a Block");
    const auto& x = trace.block_inputs[l];                          // (B, T, C)
    auto attention_input = block->ln_1 ? block->ln_1(x) : x;        // mirrors BlockImpl::forward
    torch::Tensor max_logit;  // () over this rank's heads, then over the TP group
    auto probs = block->attn->attention_probabilities(attention_input, &max_logit);  // (B, H, T, T)
    if (!max_logit.defined()) max_logit = torch::zeros({}, probs.options().dtype(torch::kFloat));
    max_logit = max_logit.to(torch::kFloat).reshape({1}).contiguous();
    if (tp.split()) parallel::all_reduce(*tp.comm, max_logit, parallel::ReduceOp::kMax);
    max_logit_rows.push_back(max_logit);  // (1)
    entropy_rows.push_back(gather_heads(diagnostics::attention_entropy_tensor(probs), tp));  // (2, H)
    count_rows.push_back(sum_counts(
        diagnostics::activation_counts_tensor(trace.mlp_activations[l], config.sparsity_threshold), tp));  // (3)
    rms_rows.push_back(torch::stack({rms(trace.attention_outputs[l]), rms(trace.mlp_outputs[l])}));  // (2)
  }
  const auto linearity = diagnostics::linearity_scores(trace.block_inputs, trace.block_outputs);  // (L, 2)
  const auto embedding_std = trace.embedding_output.to(torch::kDouble).std();
  std::vector<torch::Tensor> parts;  // all flattened to float64 (counts stay exact: < 2^53)
  for (const auto* rows : {&entropy_rows, &count_rows, &rms_rows, &max_logit_rows})
    for (const auto& t : *rows) parts.push_back(t.to(torch::kDouble).reshape({-1}));
  parts.push_back(linearity.reshape({-1}));
  parts.push_back(embedding_std.reshape({-1}));
  const auto host = torch::cat(parts).to(torch::kCPU);  // the one host read
  // Host views of the parts, in the order they were appended.
  int64_t offset = 0;
  auto take = [&](const torch::Tensor& like) {
    auto view = host.narrow(0, offset, like.numel()).view(like.sizes());
    offset += like.numel();
    return view;
  };

  DiagnosticsReport report;
  std::vector<diagnostics::HeadEntropy> entropies;
  for (const auto& t : entropy_rows) entropies.push_back(diagnostics::head_entropy_of(take(t)));
  std::vector<diagnostics::ActivationSparsity> sparsities;
  for (const auto& t : count_rows) sparsities.push_back(diagnostics::sparsity_of(diagnostics::counts_of(take(t))));
  std::vector<torch::Tensor> rmses;
  for (const auto& t : rms_rows) rmses.push_back(take(t));
  std::vector<double> max_logits;
  for (const auto& t : max_logit_rows) max_logits.push_back(take(t).item<double>());
  const auto linearity_host = take(linearity);  // (L, 2)
  report.embedding_output_std = take(embedding_std).item<double>();
  for (size_t l = 0; l < L; ++l) {
    LayerDiagnostics layer;
    layer.attention_entropy = entropies[l].entropy;
    layer.attention_normalised_entropy = entropies[l].normalised_entropy;
    layer.linearity = linearity_host[l][0].item<double>();
    layer.linearity_without_residual = linearity_host[l][1].item<double>();
    layer.mlp_sparsity = sparsities[l].below_threshold;
    layer.mlp_exactly_zero = sparsities[l].exactly_zero;
    layer.attention_output_rms = rmses[l][0].item<double>();
    layer.mlp_output_rms = rmses[l][1].item<double>();
    layer.attention_max_logit = max_logits[l];
    report.layers.push_back(std::move(layer));
  }
  report.attention_entropy_overload_fraction =
      diagnostics::entropy_overload_fraction(entropies, config.entropy_overload_threshold);
  return report;
}

nlohmann::json DiagnosticsReport::to_json() const {
  nlohmann::json layers_json = nlohmann::json::array();
  for (const auto& l : layers) {
    layers_json.push_back({{"attention_entropy", l.attention_entropy},
                           {"attention_normalised_entropy", l.attention_normalised_entropy},
                           {"linearity", l.linearity},
                           {"linearity_without_residual", l.linearity_without_residual},
                           {"mlp_sparsity", l.mlp_sparsity},
                           {"mlp_exactly_zero", l.mlp_exactly_zero},
                           {"attention_output_rms", l.attention_output_rms},
                           {"mlp_output_rms", l.mlp_output_rms},
                           {"attention_max_logit", l.attention_max_logit}});
  }
  return {{"embedding_output_std", embedding_output_std},
          {"attention_entropy_overload_fraction", attention_entropy_overload_fraction},
          {"layers", layers_json}};
}

std::map<std::string, double> DiagnosticsReport::flat_metrics() const {
  std::map<std::string, double> m;
  m["diag.embedding_output_std"] = embedding_output_std;
  m["diag.attention_entropy_overload_fraction"] = attention_entropy_overload_fraction;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    const std::string p = "diag.layer" + std::to_string(i) + ".";
    for (size_t h = 0; h < l.attention_entropy.size(); ++h) {
      const std::string head = p + "head" + std::to_string(h) + ".";
      m[head + "attention_entropy"] = l.attention_entropy[h];
      m[head + "attention_normalised_entropy"] = l.attention_normalised_entropy[h];
    }
    m[p + "linearity"] = l.linearity;
    m[p + "linearity_without_residual"] = l.linearity_without_residual;
    m[p + "mlp_sparsity"] = l.mlp_sparsity;
    m[p + "mlp_exactly_zero"] = l.mlp_exactly_zero;
    m[p + "attention_output_rms"] = l.attention_output_rms;
    m[p + "mlp_output_rms"] = l.mlp_output_rms;
    m[p + "attention_max_logit"] = l.attention_max_logit;
  }
  return m;
}

}  // namespace keel
