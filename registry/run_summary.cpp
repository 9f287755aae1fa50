// Run summaries and config differences (see run_summary.h).
#include "registry/run_summary.h"

#include "metrics/event_kinds.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

#include "common/check.h"

namespace keel::registry {
namespace {

std::string base_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  std::string name = std::filesystem::path(p).filename().string();
  return name.empty() ? p : name;
}

void count_events(RunSummary& s, const std::vector<EventRecord>& events) {
  s.events = static_cast<int64_t>(events.size());
  for (const auto& e : events) {
    s.events_by_kind[e.kind]++;
    s.events_by_action[e.action]++;
    if (e.kind == "loss_spike" || e.kind == "sustained_spike") s.loss_spikes++;
    if (e.kind == "grad_explosion") s.grad_explosions++;
    if (e.kind == "nonfinite") s.nonfinite++;
    if (e.action == "skip_update") s.skips++;
  }
  // One rollback may carry several detections (a loss spike and a grad explosion of one step):
  // consecutive rollback events of one step are one rollback.
  const EventRecord* previous = nullptr;
  for (const auto& e : events) {
    const bool rollback = e.action == event_action::kRollback;
    if (rollback && !(previous && previous->action == event_action::kRollback && previous->step == e.step))
      s.rollbacks++;
    previous = &e;
  }
}

// Completed steps run again after a rollback: executions beyond the first of a step number. Only
// complete records tell (registry rows are downsampled and carry no step time): -1 otherwise.
int64_t replayed_steps(const std::vector<StepMetric>& metrics) {
  std::set<int64_t> seen;
  int64_t executed = 0;
  for (const auto& m : metrics) {
    if (m.rollback_to >= 0 || !std::isfinite(m.step_time)) continue;
    executed++;
    seen.insert(m.step);
  }
  if (executed == 0 && !metrics.empty()) return -1;
  return executed - static_cast<int64_t>(seen.size());
}

RunSummary summarize_parts(const RunRecord& info, const std::vector<StepMetric>& metrics,
                           const std::vector<EventRecord>& events, const std::vector<DiagnosticValue>& diagnostics) {
  RunSummary s;
  s.run_dir = info.id;
  s.name = base_name(info.id);
  s.recipe = info.recipe;
  s.status = info.status;
  s.parent = info.parent;
  s.config_yaml = info.config_yaml;
  s.final_step = info.final_step;
  std::set<int64_t> distinct;
  for (const auto& m : metrics) distinct.insert(m.step);
  s.steps = info.final_step >= 0 ? info.final_step : static_cast<int64_t>(distinct.size());
  s.replayed_steps = replayed_steps(metrics);
  s.final_val_loss = info.final_val_loss;
  s.best_val_loss = info.best_val_loss;
  double time_sum = 0;
  int64_t time_count = 0;
  for (const auto& m : metrics) {
    if (std::isfinite(m.grad_norm) && (std::isnan(s.max_grad_norm) || m.grad_norm > s.max_grad_norm))
      s.max_grad_norm = m.grad_norm;
    if (std::isfinite(m.step_time)) time_sum += m.step_time, time_count++;
    if (!std::isnan(m.val_loss) && (std::isnan(s.best_val_loss) || m.val_loss < s.best_val_loss))
      s.best_val_loss = m.val_loss;
  }
  s.tokens_per_second = info.tokens_per_second;  // read_run_dir computed it from the records
  s.wall_seconds = std::isfinite(info.wall_seconds) ? info.wall_seconds : (time_count ? time_sum : kNaN);
  count_events(s, events);
  s.diagnostics = final_diagnostics(diagnostics, overload_threshold_of(info.config_yaml));
  return s;
}

bool parse_number(const std::string& text, double& value) {
  if (text.empty()) return false;
  char* end = nullptr;
  value = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

void flatten(const YAML::Node& node, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& item : node) {
      const std::string key = item.first.as<std::string>();
      flatten(item.second, prefix.empty() ? key : prefix + "." + key, out);
    }
    if (node.size() == 0 && !prefix.empty()) out[prefix] = "{}";
  } else if (node.IsScalar()) {
    out[prefix] = node.Scalar();
  } else if (node.IsNull()) {
    out[prefix] = "null";
  } else {  // a sequence: one value in flow style
    YAML::Emitter emitter;
    emitter << YAML::Flow << node;
    out[prefix] = emitter.c_str();
  }
}

bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  double x, y;
  return parse_number(a, x) && parse_number(b, y) && x == y;
}

}  // namespace

RunSummary summarize(const RunData& data) {
  return summarize_parts(data.info, data.metrics, data.events, data.diagnostics);
}

RunSummary summarize_run_dir(const std::string& run_dir) { return summarize(read_run_dir(run_dir)); }

RunSummary summarize_registry_run(const RunRegistry& registry, const std::string& id) {
  auto run = registry.get_run(id);
  KEEL_CHECK(run.has_value(), "run '" << id << "' is not in the registry '" << registry.path() << "'");
  return summarize_parts(*run, registry.get_step_metrics(id), registry.get_events(id), registry.get_diagnostics(id));
}

std::map<std::string, std::string> flatten_config(const std::string& yaml_text) {
  std::map<std::string, std::string> out;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    KEEL_CHECK(false, "invalid config YAML: " << e.what());
  }
  if (root.IsMap()) flatten(root, "", out);
  return out;
}

std::vector<ConfigDifference> config_differences(const std::vector<std::string>& yaml_texts) {
  std::vector<std::map<std::string, std::string>> configs;
  std::set<std::string> keys;
  for (const auto& text : yaml_texts) {
    configs.push_back(flatten_config(text));
    for (const auto& [key, value] : configs.back()) keys.insert(key);
  }
  std::vector<ConfigDifference> differences;
  for (const auto& key : keys) {
    ConfigDifference d;
    d.key = key;
    bool differs = false;
    for (const auto& config : configs) {
      auto it = config.find(key);
      d.values.push_back(it == config.end() ? "(absent)" : it->second);
      if (it == config.end()) differs = true;
      else if (!same_value(d.values.front(), it->second)) differs = true;
    }
    if (differs) differences.push_back(std::move(d));
  }
  return differences;
}

std::vector<ConfigDifference> config_differences(const std::vector<RunSummary>& runs) {
  std::vector<std::string> texts;
  for (const auto& r : runs) texts.push_back(r.config_yaml);
  return config_differences(texts);
}

std::string format_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size(), 0);
  std::vector<bool> numeric(header.size(), true);
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
      double value;
      if (row[c] != "-" && !parse_number(row[c], value) &&
          !(row[c].size() > 1 && (row[c].back() == 's' || row[c].back() == 'm') &&
            std::isdigit(static_cast<unsigned char>(row[c][0]))))
        numeric[c] = false;
    }
  }
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      const std::string pad(width[c] - std::min(width[c], cell.size()), ' ');
      if (c) text += "  ";
      text += numeric[c] && c > 0 ? pad + cell : cell + pad;
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out << text << "\n";
  };
  line(header);
  std::vector<std::string> rule;
  for (size_t w : width) rule.emplace_back(w, '-');
  line(rule);
  for (const auto& row : rows) line(row);
  return out.str();
}

std::string format_number(double value, int decimals) {
  if (std::isnan(value)) return "-";
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
  return buffer;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds)) return "-";
  char buffer[64];
  if (seconds < 60) {
    std::snprintf(buffer, sizeof(buffer), "%.1fs", seconds);
  } else if (seconds < 3600) {
    const long s = std::lround(seconds);
    std::snprintf(buffer, sizeof(buffer), "%ldm%02lds", s / 60, s % 60);
  } else {
    const long m = std::lround(seconds / 60);
    std::snprintf(buffer, sizeof(buffer), "%ldh%02ldm", m / 60, m % 60);
  }
  return buffer;
}

}  // namespace keel::registry
