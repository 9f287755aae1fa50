// The TDA report of `keel generate --tda-sweep T1,T2,...`: one prompt decoded greedily, first dense
// and then with TDA (generation/tda.h) at each threshold, each compared with the dense output
// (token agreement, first divergence) and measured by the dense model's loss on the generated
// text and by the validation loss when each window's continuation is decoded through the MLPs
// TDA slices for its first part. It lives beside the decoder it measures; the command only loads
// the model, calls it and prints the rows. LibTorch (no spdlog/fmt in these TUs).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "generation/generator.h"
#include "model/gpt.h"

namespace keel {

// The figures of one generation under the names of keel generate's JSON report.
nlohmann::json generation_figures(const GenerationResult& result);

struct TdaSweepInput {
  std::vector<int64_t> prompt;
  GenerationOptions generation;    // sampling is made greedy and TDA set per row
  std::vector<double> thresholds;  // TDA threshold mode, one row each
  // Validation windows of equal length; the first `mask_prompt_length` tokens of each choose the
  // mask, the loss is over the rest. None: val_loss_masked is NaN.
  std::vector<std::vector<int64_t>> validation_windows;
  int64_t mask_prompt_length = 0;
};

struct TdaSweepRow {
  std::optional<double> threshold;  // none: the dense reference
  GenerationResult result;
  double sparsity = 0;              // fraction of MLP neurons dropped while decoding
  double agreement = 1;             // share of the dense tokens this row reproduced, position by position
  int64_t first_divergence = 0;     // first position that differs (the compared length when none does)
  double dense_loss_on_text = 0;    // the dense model's loss on the prompt's continuation by this row
  double val_loss_masked = 0;       // mean validation loss over the windows under this row's TDA
  // The row of the JSON report: generation_figures plus the measures (and the per-layer sparsity).
  nlohmann::json to_json() const;
};

// Runs the sweep on `model` (eval mode); `on_row` sees each row as soon as it is measured, the
// dense reference first. Returns the rows in that order.
std::vector<TdaSweepRow> run_tda_sweep(Gpt& model, const TdaSweepInput& input,
                                       const std::function<void(const TdaSweepRow&)>& on_row);

}  // namespace keel
