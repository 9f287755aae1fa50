// Generation loop, the no-cache reference and the quality measures (see generator.h).
#include "generation/generator.h"

#include <chrono>

#include "common/check.h"
#include "generation/kv_cache.h"
#include "model/torch_compat.h"

namespace keel {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

torch::Device device_of(Gpt& model) { return model->wte->weight.device(); }

torch::Tensor ids_tensor(const std::vector<int64_t>& ids, torch::Device device) {
  return torch::tensor(ids, torch::kLong).view({1, static_cast<int64_t>(ids.size())}).to(device);  // (1, T)
}

int64_t new_token_budget(Gpt& model, const std::vector<int64_t>& prompt, const GenerationOptions& options) {
  KEEL_CHECK(!prompt.empty(), "generation needs a prompt of at least one token");
  const int64_t context = model->config().context_length;
  KEEL_CHECK(static_cast<int64_t>(prompt.size()) < context,
             "the prompt has " << prompt.size() << " tokens; model.context_length is " << context);
  return std::min<int64_t>(options.max_new_tokens, context - static_cast<int64_t>(prompt.size()));
}

}  // namespace

GenerationResult generate(Gpt& model, const std::vector<int64_t>& prompt, const GenerationOptions& options,
                          std::vector<torch::Tensor>* step_logits) {
  torch::NoGradGuard no_grad;
  KEEL_CHECK(!model->is_training(), "generate: put the model in eval mode first");
  const int64_t budget = new_token_budget(model, prompt, options);
  const auto device = device_of(model);
  GenerationResult result;
  Sampler sampler(options.sampler);
  DecodeCache cache(model->config().num_layers, static_cast<int64_t>(prompt.size()) + budget);
  DecodeHooks hooks;
  hooks.caches = cache.pointers();
  if (budget <= 0) return result;

  // Prefill: the whole prompt in one call (its MLP activations traced when TDA chooses neurons).
  auto start = Clock::now();
  ForwardTrace trace;
  hooks.trace = options.tda.enabled() ? &trace : nullptr;
  torch::Tensor logits;
  {
    compat::CudaBf16Autocast autocast(options.bf16_autocast);
    logits = model->forward_cached(ids_tensor(prompt, device), 0, hooks);  // (1, P, V)
  }
  hooks.trace = nullptr;
  if (options.tda.enabled()) {
    TdaPlan plan = plan_tda(model, trace, options.tda);
    hooks.mlp = plan.hooks();
    result.tda_sparsity = plan.sparsity;
    result.tda_layer_sparsity = plan.layer_sparsity;
  }
  auto last = logits[0][-1];
  if (step_logits) step_logits->push_back(last.to(torch::kCPU, torch::kFloat));
  int64_t token = sampler.next(last);
  result.tokens.push_back(token);
  result.prefill_seconds = seconds_since(start);

  start = Clock::now();
  int64_t position = static_cast<int64_t>(prompt.size());
  while (static_cast<int64_t>(result.tokens.size()) < budget && token != options.eos_id) {
    {
      compat::CudaBf16Autocast autocast(options.bf16_autocast);
      logits = model->forward_cached(ids_tensor({token}, device), position, hooks);  // (1, 1, V)
    }
    ++position;
    ++result.decode_steps;
    last = logits[0][0];
    if (step_logits) step_logits->push_back(last.to(torch::kCPU, torch::kFloat));
    token = sampler.next(last);  // reads the logits: the step has finished on the device
    result.tokens.push_back(token);
  }
  result.decode_seconds = seconds_since(start);
  result.cache_bytes = cache.bytes();
  return result;
}

GenerationResult generate_by_recomputation(Gpt& model, const std::vector<int64_t>& prompt,
                                           const GenerationOptions& options, std::vector<torch::Tensor>* step_logits) {
  torch::NoGradGuard no_grad;
  KEEL_CHECK(!options.tda.enabled(), "the recomputation reference is dense");
  const int64_t budget = new_token_budget(model, prompt, options);
  GenerationResult result;
  Sampler sampler(options.sampler);
  std::vector<int64_t> sequence = prompt;
  const auto start = Clock::now();
  while (static_cast<int64_t>(result.tokens.size()) < budget) {
    torch::Tensor logits;
    {
      compat::CudaBf16Autocast autocast(options.bf16_autocast);
      logits = model->forward(ids_tensor(sequence, device_of(model)));  // (1, T, V)
    }
    auto last = logits[0][-1];
    if (step_logits) step_logits->push_back(last.to(torch::kCPU, torch::kFloat));
    const int64_t token = sampler.next(last);
    result.tokens.push_back(token);
    sequence.push_back(token);
    if (token == options.eos_id) break;
  }
  result.decode_seconds = seconds_since(start);
  result.decode_steps = static_cast<int64_t>(result.tokens.size());
  return result;
}

double continuation_loss(Gpt& model, const std::vector<int64_t>& tokens, int64_t from, bool bf16_autocast) {
  torch::NoGradGuard no_grad;
  const int64_t T = static_cast<int64_t>(tokens.size());
  KEEL_CHECK(from >= 1 && from < T, "continuation_loss: from=" << from << " for " << T << " tokens");
  auto ids = ids_tensor(tokens, device_of(model));
  torch::Tensor logits;
  {
    compat::CudaBf16Autocast autocast(bf16_autocast);
    logits = model->forward(ids.narrow(1, 0, T - 1));  // (1, T-1, V): position i predicts token i+1
  }
  auto predicted = logits[0].narrow(0, from - 1, T - from).to(torch::kFloat);
  return torch::nn::functional::cross_entropy(predicted, ids[0].narrow(0, from, T - from)).item<double>();
}

std::pair<double, double> prompted_loss(Gpt& model, const std::vector<int64_t>& sequence, int64_t prompt_len,
                                        const TdaOptions& tda, bool bf16_autocast) {
  torch::NoGradGuard no_grad;
  const int64_t T = static_cast<int64_t>(sequence.size());
  KEEL_CHECK(prompt_len >= 1 && prompt_len + 1 < T, "prompted_loss: prompt of " << prompt_len << " in " << T);
  auto ids = ids_tensor(sequence, device_of(model));
  DecodeCache cache(model->config().num_layers, T);
  DecodeHooks hooks;
  hooks.caches = cache.pointers();
  ForwardTrace trace;
  hooks.trace = tda.enabled() ? &trace : nullptr;
  compat::CudaBf16Autocast autocast(bf16_autocast);
  auto prefill = model->forward_cached(ids.narrow(1, 0, prompt_len), 0, hooks);  // (1, P, V)
  hooks.trace = nullptr;
  double sparsity = 0;
  if (tda.enabled()) {
    TdaPlan plan = plan_tda(model, trace, tda);
    hooks.mlp = plan.hooks();
    sparsity = plan.sparsity;
  }
  // Predictions for tokens prompt_len .. T-1: the prefill's last position, then the rest in one call.
  auto rest = model->forward_cached(ids.narrow(1, prompt_len, T - 1 - prompt_len), prompt_len, hooks);
  auto logits = torch::cat({prefill[0].narrow(0, prompt_len - 1, 1), rest[0]}, 0).to(torch::kFloat);  // (T-P, V)
  auto loss = torch::nn::functional::cross_entropy(logits, ids[0].narrow(0, prompt_len, T - prompt_len));
  return {loss.item<double>(), sparsity};
}

}  // namespace keel
