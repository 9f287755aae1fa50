// Summaries of model diagnostics (see diagnostics_summary.h).
#include "registry/diagnostics_summary.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "registry/run_summary.h"

namespace keel::registry {
namespace {

// Parses "diag.layer<l>.<rest>" -> (l, rest); false for other keys.
bool split_layer_key(const std::string& key, int64_t& layer, std::string& rest) {
  static const std::string prefix = "diag.layer";
  if (key.compare(0, prefix.size(), prefix) != 0) return false;
  size_t pos = prefix.size(), end = pos;
  while (end < key.size() && std::isdigit(static_cast<unsigned char>(key[end]))) ++end;
  if (end == pos || end >= key.size() || key[end] != '.') return false;
  layer = std::strtoll(key.substr(pos, end - pos).c_str(), nullptr, 10);
  rest = key.substr(end + 1);
  return true;
}

// "head<h>.<name>" -> (h, name).
bool split_head_key(const std::string& rest, int64_t& head, std::string& name) {
  if (rest.compare(0, 4, "head") != 0) return false;
  size_t end = 4;
  while (end < rest.size() && std::isdigit(static_cast<unsigned char>(rest[end]))) ++end;
  if (end == 4 || end >= rest.size() || rest[end] != '.') return false;
  head = std::strtoll(rest.substr(4, end - 4).c_str(), nullptr, 10);
  name = rest.substr(end + 1);
  return true;
}

void set_head(std::vector<double>& values, int64_t head, double value) {
  if (static_cast<int64_t>(values.size()) <= head) values.resize(static_cast<size_t>(head) + 1, kNaN);
  values[static_cast<size_t>(head)] = value;
}

// Mean of the finite values; NaN when there are none.
struct Mean {
  double sum = 0;
  int64_t n = 0;
  void add(double v) {
    if (std::isfinite(v)) sum += v, ++n;
  }
  double get() const { return n ? sum / static_cast<double>(n) : kNaN; }
};

}  // namespace

DiagnosticsSummary summarize_diagnostics(const std::map<std::string, double>& flat, int64_t step,
                                         double overload_threshold) {
  DiagnosticsSummary s;
  if (flat.empty()) return s;
  s.step = step;
  for (const auto& [key, value] : flat) {
    if (key == "diag.embedding_output_std") s.embedding_output_std = value;
    if (key == "diag.attention_entropy_overload_fraction") s.overload_fraction = value;
    int64_t l = 0, h = 0;
    std::string rest, name;
    if (!split_layer_key(key, l, rest)) continue;
    if (static_cast<int64_t>(s.layers.size()) <= l) s.layers.resize(static_cast<size_t>(l) + 1);
    auto& layer = s.layers[static_cast<size_t>(l)];
    if (split_head_key(rest, h, name)) {
      if (name == "attention_entropy") set_head(layer.head_entropy, h, value);
      if (name == "attention_normalised_entropy") set_head(layer.head_normalised_entropy, h, value);
    } else if (rest == "linearity") {
      layer.linearity = value;
    } else if (rest == "linearity_without_residual") {
      layer.linearity_without_residual = value;
    } else if (rest == "mlp_sparsity") {
      layer.mlp_sparsity = value;
    } else if (rest == "mlp_exactly_zero") {
      layer.mlp_exactly_zero = value;
    } else if (rest == "attention_output_rms") {
      layer.attention_output_rms = value;
    } else if (rest == "mlp_output_rms") {
      layer.mlp_output_rms = value;
    } else if (rest == "attention_max_logit") {
      layer.attention_max_logit = value;
    }
  }
  Mean entropy, normalised, linearity, linearity_wo, sparsity, zeros;
  int64_t heads = 0, overloaded = 0;
  for (auto& layer : s.layers) {
    Mean layer_entropy, layer_normalised;
    for (double e : layer.head_entropy) layer_entropy.add(e), entropy.add(e);
    for (double e : layer.head_normalised_entropy) {
      layer_normalised.add(e);
      normalised.add(e);
      if (!std::isfinite(e)) continue;
      ++heads;
      if (e > overload_threshold) ++layer.overloaded_heads, ++overloaded;
    }
    layer.mean_entropy = layer_entropy.get();
    layer.mean_normalised_entropy = layer_normalised.get();
    linearity.add(layer.linearity);
    linearity_wo.add(layer.linearity_without_residual);
    sparsity.add(layer.mlp_sparsity);
    zeros.add(layer.mlp_exactly_zero);
    if (std::isfinite(layer.attention_max_logit) &&
        (std::isnan(s.max_attention_logit) || layer.attention_max_logit > s.max_attention_logit))
      s.max_attention_logit = layer.attention_max_logit;
  }
  s.mean_entropy = entropy.get();
  s.mean_normalised_entropy = normalised.get();
  s.mean_linearity = linearity.get();
  s.mean_linearity_without_residual = linearity_wo.get();
  s.mean_mlp_sparsity = sparsity.get();
  s.mean_mlp_exactly_zero = zeros.get();
  if (std::isnan(s.overload_fraction) && heads > 0)
    s.overload_fraction = static_cast<double>(overloaded) / static_cast<double>(heads);
  return s;
}

DiagnosticsSummary final_diagnostics(const std::vector<DiagnosticValue>& values, double overload_threshold) {
  if (values.empty()) return {};
  // The last record's values: walk back while the step stays that of the last value. A rollback
  // can repeat a step; the values of the final occurrence are the later ones and overwrite.
  const int64_t step = values.back().step;
  size_t first = values.size();
  while (first > 0 && values[first - 1].step == step) --first;
  std::map<std::string, double> flat;
  for (size_t i = first; i < values.size(); ++i) flat[values[i].name] = values[i].value;
  return summarize_diagnostics(flat, step, overload_threshold);
}

double overload_threshold_of(const std::string& config_yaml) {
  if (config_yaml.empty()) return kDefaultOverloadThreshold;
  std::map<std::string, std::string> config;
  try {
    config = flatten_config(config_yaml);
  } catch (const std::exception&) {
    return kDefaultOverloadThreshold;
  }
  auto it = config.find("diagnostics.entropy_overload_threshold");
  if (it == config.end()) return kDefaultOverloadThreshold;
  char* end = nullptr;
  const double value = std::strtod(it->second.c_str(), &end);
  return end != it->second.c_str() ? value : kDefaultOverloadThreshold;
}

std::string format_layer_table(const DiagnosticsSummary& s) {
  std::vector<std::vector<std::string>> rows;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const auto& layer = s.layers[l];
    rows.push_back({std::to_string(l), format_number(layer.mean_entropy, 3),
                    format_number(layer.mean_normalised_entropy, 3),
                    std::to_string(layer.overloaded_heads) + "/" + std::to_string(layer.head_normalised_entropy.size()),
                    format_number(layer.linearity, 4), format_number(layer.linearity_without_residual, 4),
                    format_number(layer.mlp_sparsity, 4), format_number(layer.mlp_exactly_zero, 4),
                    format_number(layer.attention_output_rms, 4), format_number(layer.mlp_output_rms, 4),
                    format_number(layer.attention_max_logit, 2)});
  }
  return format_table({"layer", "entropy", "norm. entropy", "overloaded", "linearity", "lin. w/o resid.",
                       "MLP sparsity", "exact zeros", "attn out RMS", "MLP out RMS", "max attn logit"},
                      rows);
}

std::string format_head_table(const DiagnosticsSummary& s) {
  size_t heads = 0;
  for (const auto& layer : s.layers) heads = std::max(heads, layer.head_normalised_entropy.size());
  std::vector<std::string> header = {"layer"};
  for (size_t h = 0; h < heads; ++h) header.push_back("h" + std::to_string(h));
  std::vector<std::vector<std::string>> rows;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    std::vector<std::string> row = {std::to_string(l)};
    for (size_t h = 0; h < heads; ++h) {
      const auto& e = s.layers[l].head_normalised_entropy;
      row.push_back(format_number(h < e.size() ? e[h] : kNaN, 2));
    }
    rows.push_back(row);
  }
  return format_table(header, rows);
}

}  // namespace keel::registry
