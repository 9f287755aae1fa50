// The TDA sweep of keel generate (see tda_sweep.h).
#include "generation/tda_sweep.h"

#include <algorithm>

namespace keel {
namespace {

// `prompt` followed by `continuation`.
std::vector<int64_t> joined(const std::vector<int64_t>& prompt, const std::vector<int64_t>& continuation) {
  std::vector<int64_t> text = prompt;
  text.insert(text.end(), continuation.begin(), continuation.end());
  return text;
}

double masked_val_loss(Gpt& model, const TdaSweepInput& input, const TdaOptions& tda) {
  double sum = 0;
  for (const auto& window : input.validation_windows)
    sum += prompted_loss(model, window, input.mask_prompt_length, tda, input.generation.bf16_autocast).first;
  return sum / static_cast<double>(input.validation_windows.size());
}

double loss_on_continuation(Gpt& model, const TdaSweepInput& input, const GenerationResult& result) {
  return continuation_loss(model, joined(input.prompt, result.tokens), static_cast<int64_t>(input.prompt.size()),
                           input.generation.bf16_autocast);
}

TdaSweepRow dense_row(Gpt& model, const TdaSweepInput& input, GenerationOptions options) {
  options.tda = TdaOptions{};
  TdaSweepRow row;
  row.result = generate(model, input.prompt, options);
  row.dense_loss_on_text = loss_on_continuation(model, input, row.result);
  row.val_loss_masked = masked_val_loss(model, input, TdaOptions{});
  row.first_divergence = static_cast<int64_t>(row.result.tokens.size());
  return row;
}

TdaSweepRow threshold_row(Gpt& model, const TdaSweepInput& input, GenerationOptions options, double threshold,
                          const std::vector<int64_t>& dense_tokens) {
  options.tda = TdaOptions{};
  options.tda.threshold = threshold;
  TdaSweepRow row;
  row.threshold = threshold;
  row.result = generate(model, input.prompt, options);
  row.sparsity = row.result.tda_sparsity;
  const size_t n = std::min(row.result.tokens.size(), dense_tokens.size());
  size_t same = 0, first_diff = n;
  for (size_t i = 0; i < n; ++i) {
    if (row.result.tokens[i] == dense_tokens[i]) ++same;
    else if (first_diff == n) first_diff = i;
  }
  row.agreement = n > 0 ? static_cast<double>(same) / static_cast<double>(dense_tokens.size()) : 0.0;
  row.first_divergence = static_cast<int64_t>(first_diff);
  row.dense_loss_on_text = loss_on_continuation(model, input, row.result);
  row.val_loss_masked = masked_val_loss(model, input, options.tda);
  return row;
}

}  // namespace

nlohmann::json generation_figures(const GenerationResult& r) {
  return nlohmann::json{{"new_tokens", r.tokens.size()},
                        {"prefill_seconds", r.prefill_seconds},
                        {"decode_steps", r.decode_steps},
                        {"decode_seconds", r.decode_seconds},
                        {"decode_tokens_per_second", r.decode_tokens_per_second()},
                        {"cache_bytes", r.cache_bytes},
                        {"tda_sparsity", r.tda_sparsity}};
}

nlohmann::json TdaSweepRow::to_json() const {
  nlohmann::json row = generation_figures(result);
  row.update({{"threshold", threshold ? nlohmann::json(*threshold) : nlohmann::json(nullptr)},
              {"sparsity", sparsity},
              {"agreement", agreement},
              {"first_divergence", first_divergence},
              {"dense_loss_on_text", dense_loss_on_text},
              {"val_loss_masked", val_loss_masked}});
  if (threshold) row["layer_sparsity"] = result.tda_layer_sparsity;
  return row;
}

std::vector<TdaSweepRow> run_tda_sweep(Gpt& model, const TdaSweepInput& input,
                                       const std::function<void(const TdaSweepRow&)>& on_row) {
  GenerationOptions greedy = input.generation;
  greedy.sampler.greedy = true;  // agreement with the dense output is only meaningful without sampling
  std::vector<TdaSweepRow> rows = {dense_row(model, input, greedy)};
  on_row(rows.back());
  for (const double threshold : input.thresholds) {
    rows.push_back(threshold_row(model, input, greedy, threshold, rows.front().result.tokens));
    on_row(rows.back());
  }
  return rows;
}

}  // namespace keel
