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

double rms(const torch::Tensor& t) {
  return t.numel() == 0 ? 0.0 : t.detach().to(torch::kDouble).pow(2).mean().sqrt().item<double>();
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
// rank holds all H heads in head order.
diagnostics::HeadEntropy gather_heads(const diagnostics::HeadEntropy& local, const TensorParallelPlacement& tp,
                                      const torch::Device& device) {
  if (!tp.split()) return local;
  const int64_t h_local = static_cast<int64_t>(local.entropy.size());
  auto send = torch::empty({2, h_local}, torch::kDouble);  // (2, H/tp): entropy, normalised
  for (int64_t h = 0; h < h_local; ++h) {
    send[0][h] = local.entropy[h];
    send[1][h] = local.normalised_entropy[h];
  }
  // (tp, 2, H/tp), on the device the backend wants (NCCL: the model's CUDA device).
  auto gathered = parallel::all_gather(*tp.comm, send.to(device)).to(torch::kCPU).contiguous();
  diagnostics::HeadEntropy full;
  for (int64_t r = 0; r < tp.size; ++r)
    for (int64_t h = 0; h < h_local; ++h) {
      full.entropy.push_back(gathered[r][0][h].item<double>());
      full.normalised_entropy.push_back(gathered[r][1][h].item<double>());
    }
  return full;
}

// Tensor parallelism: each rank counted its hidden/tp MLP units; the sums over ranks are the
// counts of the whole activation tensor.
diagnostics::ActivationCounts sum_counts(const diagnostics::ActivationCounts& local, const TensorParallelPlacement& tp,
                                         const torch::Device& device) {
  if (!tp.split()) return local;
  auto counts = torch::tensor({local.total, local.below_threshold, local.exactly_zero}, torch::kLong).to(device);
  parallel::all_reduce(*tp.comm, counts, parallel::ReduceOp::kSum);
  counts = counts.to(torch::kCPU);
  return {counts[0].item<int64_t>(), counts[1].item<int64_t>(), counts[2].item<int64_t>()};
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
  const torch::Device device = probe_tokens.device();

  DiagnosticsReport report;
  report.embedding_output_std = trace.embedding_output.to(torch::kDouble).std().item<double>();
  std::vector<diagnostics::HeadEntropy> entropies;
  for (size_t l = 0; l < L; ++l) {
    auto block = model.blocks[l]->as<BlockImpl>();
    KEEL_CHECK(block != nullptr, "blocks[" << l << "] is not a Block");
    const auto& x = trace.block_inputs[l];                          // (B, T, C)
    auto attention_input = block->ln_1 ? block->ln_1(x) : x;        // mirrors BlockImpl::forward
    auto probs = block->attn->attention_probabilities(attention_input);  // (B, H, T, T)
    entropies.push_back(gather_heads(diagnostics::attention_entropy(probs), tp, device));

    LayerDiagnostics layer;
    layer.attention_entropy = entropies.back().entropy;
    layer.attention_normalised_entropy = entropies.back().normalised_entropy;
    layer.linearity = diagnostics::linearity_score(x, trace.block_outputs[l]);
    layer.linearity_without_residual = diagnostics::linearity_score_without_residual(x, trace.block_outputs[l]);
    auto sparsity = diagnostics::sparsity_of(
        sum_counts(diagnostics::activation_counts(trace.mlp_activations[l], config.sparsity_threshold), tp, device));
    layer.mlp_sparsity = sparsity.below_threshold;
    layer.mlp_exactly_zero = sparsity.exactly_zero;
    layer.attention_output_rms = rms(trace.attention_outputs[l]);
    layer.mlp_output_rms = rms(trace.mlp_outputs[l]);
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
                           {"mlp_output_rms", l.mlp_output_rms}});
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
  }
  return m;
}

}  // namespace keel
