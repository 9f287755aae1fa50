// keel-diagnostics-bench: what one model-diagnostics pass costs (diagnostics/model_diagnostics.h),
// whole and by part, so that its share of training time (issue: monitor + diagnostics < 3%) can be
// traced to a cause. Builds a model of the given shape with its initial weights (the cost does not
// depend on the values), takes a random probe batch, and times with the device synchronised:
//   - the whole pass (the first one apart: it pays for lazy CUDA module loading and solver set-up),
//   - its parts over all layers: the traced forward, attention probabilities + entropy, the two
//     linearity scores batched over layers (as the pass runs them) against layer by layer and
//     against the former two separate fits per layer, the MLP sparsity counts.
//   keel-diagnostics-bench [--device cuda] [--layers 12 --heads 12 --d-model 768 --context 1024
//                           --vocab 50304 --probe 4 --passes 5]
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "diagnostics/activation_sparsity.h"
#include "diagnostics/attention_entropy.h"
#include "diagnostics/layer_linearity.h"
#include "diagnostics/model_diagnostics.h"
#include "model/gpt.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Timer {
  torch::Device device;
  void sync() const {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  }
  template <typename Fn>
  double ms(Fn&& fn) const {
    sync();
    const auto start = Clock::now();
    fn();
    sync();
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"keel-diagnostics-bench: the cost of one model-diagnostics pass, whole and by part"};
  std::string device_name = torch::cuda::is_available() ? "cuda" : "cpu";
  keel::ModelConfig model_config;
  model_config.num_layers = 12;
  model_config.num_heads = 12;
  model_config.d_model = 768;
  model_config.context_length = 1024;
  model_config.vocab_size = 50304;
  int64_t probe = 4;
  int passes = 5;
  app.add_option("--device", device_name, "cuda or cpu")->capture_default_str();
  app.add_option("--layers", model_config.num_layers)->capture_default_str();
  app.add_option("--heads", model_config.num_heads)->capture_default_str();
  app.add_option("--d-model", model_config.d_model)->capture_default_str();
  app.add_option("--context", model_config.context_length)->capture_default_str();
  app.add_option("--vocab", model_config.vocab_size)->capture_default_str();
  app.add_option("--probe", probe, "sequences in the probe batch (diagnostics.probe_batch_size)")->capture_default_str();
  app.add_option("--passes", passes, "timed passes after the first")->capture_default_str()->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);
  try {
    const torch::Device device(device_name);
    const Timer timer{device};
    torch::manual_seed(0);
    keel::Gpt model(model_config);
    model->to(device);
    const auto tokens = torch::randint(model_config.vocab_size, {probe, model_config.context_length},
                                       torch::TensorOptions().dtype(torch::kLong).device(device));
    keel::DiagnosticsConfig config;
    std::printf("device %s, model L=%lld H=%lld d=%lld, probe %lld x %lld tokens\n", device_name.c_str(),
                static_cast<long long>(model_config.num_layers), static_cast<long long>(model_config.num_heads),
                static_cast<long long>(model_config.d_model), static_cast<long long>(probe),
                static_cast<long long>(model_config.context_length));

    const double first = timer.ms([&] { keel::compute_diagnostics(*model, tokens, config); });
    std::vector<double> whole;
    for (int i = 0; i < passes; ++i) whole.push_back(timer.ms([&] { keel::compute_diagnostics(*model, tokens, config); }));
    std::sort(whole.begin(), whole.end());
    std::printf("whole pass: first %.1f ms; then median %.1f ms (min %.1f, max %.1f, %d passes)\n", first,
                whole[whole.size() / 2], whole.front(), whole.back(), passes);

    // The parts, over all layers, as compute_diagnostics runs them.
    torch::NoGradGuard no_grad;
    model->eval();
    keel::ForwardTrace trace;
    const double forward = timer.ms([&] { model->forward(tokens, &trace); });
    double entropy = 0, linearity = 0, linearity_separate = 0, sparsity = 0;
    for (size_t l = 0; l < trace.block_inputs.size(); ++l) {
      auto block = model->blocks[l]->as<keel::BlockImpl>();
      const auto& x = trace.block_inputs[l];
      const auto& y = trace.block_outputs[l];
      entropy += timer.ms([&] {
        auto input = block->ln_1 ? block->ln_1(x) : x;
        keel::diagnostics::attention_entropy_tensor(block->attn->attention_probabilities(input));
      });
      linearity += timer.ms([&] { keel::diagnostics::linearity_scores({x}, {y}); });
      linearity_separate += timer.ms([&] {
        keel::diagnostics::linearity_score(x, y);
        keel::diagnostics::linearity_score_without_residual(x, y);
      });
      sparsity += timer.ms([&] {
        keel::diagnostics::activation_counts_tensor(trace.mlp_activations[l], config.sparsity_threshold);
      });
    }
    const double linearity_batched =
        timer.ms([&] { keel::diagnostics::linearity_scores(trace.block_inputs, trace.block_outputs); });
    std::printf("parts (all layers): traced forward %.1f ms, attention probabilities + entropy %.1f ms, "
                "linearity %.1f ms batched over layers [layer by layer, shared eigh: %.1f ms; two separate fits "
                "per layer: %.1f ms], sparsity %.1f ms\n",
                forward, entropy, linearity_batched, linearity, linearity_separate, sparsity);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keel-diagnostics-bench: %s\n", e.what());
    return 1;
  }
}
