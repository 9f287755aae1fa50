// A live scrape of the real keel-coordinator program, fed by the stand-in workers of
// metrics_test_driver.h over gRPC: every family is listed, and its name and labels must follow the
// conventions (`keel_` prefix, base units, counters end in `_total`, ratios in 0..1, run and recipe
// on every series, only bounded labels); the families the issue asks for must be there with the
// driver's numbers; and `promtool check metrics` must accept the scrape.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>

#include "common/fs.h"
#include "coordinator/job_state.h"
#include "metrics/metric_keys.h"
#include "tests/coordinator/coordinator_process.h"
#include "tests/metrics/metrics_test_driver.h"
#include "tests/metrics/test_http.h"
#include "tests/coordinator/test_util.h"

namespace keel::coord {
namespace {

using testing::address_after;

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Family {
  std::string name, type, help;
  std::vector<Sample> samples;
};

// Reads the text exposition format back (tests only: prometheus-cpp writes it).
std::map<std::string, Family> parse_exposition(const std::string& text) {
  std::map<std::string, Family> families;
  std::string current;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    std::istringstream words(line);
    if (line.rfind("# ", 0) == 0) {
      std::string hash, what, name, rest;
      words >> hash >> what >> name;
      std::getline(words, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      families[name].name = name;
      if (what == "TYPE") families[name].type = rest;
      if (what == "HELP") families[name].help = rest;
      current = name;
      continue;
    }
    Sample s;
    const size_t brace = line.find('{');
    const size_t name_end = brace != std::string::npos ? brace : line.find(' ');
    s.name = line.substr(0, name_end);
    size_t pos = name_end;
    if (brace != std::string::npos) {
      pos = brace + 1;
      while (line[pos] != '}') {
        const size_t eq = line.find('=', pos);
        const std::string label = line.substr(pos, eq - pos);
        std::string value;
        size_t i = eq + 2;  // past ="
        for (; line[i] != '"'; ++i) value += line[i] == '\\' ? line[++i] : line[i];
        s.labels[label] = value;
        pos = i + 1;
        if (line[pos] == ',') ++pos;
      }
      ++pos;
    }
    s.value = std::strtod(line.c_str() + pos, nullptr);
    EXPECT_EQ(s.name.rfind(current, 0), 0u) << "sample " << s.name << " outside its family " << current;
    families[current].samples.push_back(s);
  }
  return families;
}

const std::set<std::string> kExposerFamilies = {"exposer_transferred_bytes_total", "exposer_scrapes_total",
                                                "exposer_request_latencies"};

const std::vector<std::string> kRequiredFamilies = {
    "keel_loss", "keel_val_loss", "keel_grad_norm", "keel_learning_rate", "keel_tokens_per_second",
    "keel_mfu_ratio", "keel_step", "keel_step_time_seconds", "keel_skipped_steps_total", "keel_spikes_total",
    "keel_rollbacks_total", "keel_aborts_total", "keel_restarts_total", "keel_recoveries_total",
    "keel_checkpoint_save_seconds", "keel_checkpoint_size_bytes", "keel_checkpoint_latest_committed_step",
    "keel_worker_up", "keel_worker_heartbeat_age_seconds", "keel_worker_step", "keel_worker_shut_down",
    "keel_gpu_memory_bytes", "keel_optimizer_state_bytes", "keel_update_ratio", "keel_tokens_seen", "keel_layer_grad_norm",
    "keel_embedding_output_std", "keel_attention_entropy_overload_ratio", "keel_attention_entropy",
    "keel_attention_normalised_entropy_ratio", "keel_layer_linearity", "keel_layer_linearity_without_residual",
    "keel_mlp_sparsity_ratio", "keel_mlp_exactly_zero_ratio", "keel_attention_output_rms", "keel_mlp_output_rms",
    "keel_job_state", "keel_job_generation", "keel_job_world_size", "keel_last_step_timestamp_seconds"};

std::vector<std::string> name_parts(const std::string& name) {
  std::vector<std::string> parts;
  std::istringstream in(name);
  std::string part;
  while (std::getline(in, part, '_')) parts.push_back(part);
  return parts;
}

// Every convention of metrics/prometheus_exporter.h; one failure per offending family or label.
void check_conventions(const Family& f, const std::string& run, const std::string& recipe, int world_size) {
  static const std::regex name_pattern("keel_[a-z][a-z0-9_]*");
  static const std::regex layer_pattern("embedding|head|block\\.(0|[1-9][0-9]*)");
  static const std::regex head_pattern("0|[1-9][0-9]*");
  static const std::set<std::string> allowed_labels = {"run", "recipe", "rank", "layer", "head", "kind", "state"};
  static const std::set<std::string> non_base_units = {"ms", "milliseconds", "microseconds", "us", "ns",
                                                       "minutes", "hours", "percent", "kb", "mb", "gb",
                                                       "kib", "mib", "gib", "bits"};
  EXPECT_TRUE(std::regex_match(f.name, name_pattern)) << f.name << ": not keel_ + lower-case snake case";
  EXPECT_FALSE(f.help.empty()) << f.name << ": no HELP";
  const bool total = f.name.size() > 6 && f.name.compare(f.name.size() - 6, 6, "_total") == 0;
  EXPECT_EQ(f.type == "counter", total) << f.name << " (" << f.type << "): counters and only counters end in _total";
  auto parts = name_parts(total ? f.name.substr(0, f.name.size() - 6) : f.name);
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_EQ(non_base_units.count(parts[i]), 0u) << f.name << ": '" << parts[i] << "' is not a base unit";
    if (parts[i] == "seconds" || parts[i] == "bytes" || parts[i] == "ratio") {
      EXPECT_EQ(i, parts.size() - 1) << f.name << ": the unit goes last";
    }
  }
  if (f.type == "histogram") {
    EXPECT_TRUE(parts.back() == "seconds" || parts.back() == "bytes") << f.name << ": histogram without a base unit";
  }
  EXPECT_LE(f.samples.size(), 300u) << f.name << ": unexpectedly many series";
  const bool ratio = parts.back() == "ratio";
  for (const auto& s : f.samples) {
    EXPECT_EQ(s.labels.count("run") ? s.labels.at("run") : "", run) << s.name << ": run label";
    EXPECT_EQ(s.labels.count("recipe") ? s.labels.at("recipe") : "", recipe) << s.name << ": recipe label";
    for (const auto& [label, value] : s.labels) {
      const bool bucket_bound = label == "le" && f.type == "histogram";
      EXPECT_TRUE(allowed_labels.count(label) || bucket_bound) << s.name << ": label '" << label << "' not allowed";
      if (label == "rank") {
        EXPECT_TRUE(std::regex_match(value, head_pattern) && std::stoi(value) < world_size) << s.name << " rank=" << value;
      }
      if (label == "layer") {
        EXPECT_TRUE(std::regex_match(value, layer_pattern)) << s.name << " layer=" << value;
      }
      if (label == "head") {
        EXPECT_TRUE(std::regex_match(value, head_pattern)) << s.name << " head=" << value;
      }
      if (label == "kind") {
        const auto& kinds = trigger_kinds();
        EXPECT_TRUE(std::find(kinds.begin(), kinds.end(), value) != kinds.end() || value == kOtherKind)
            << s.name << " kind=" << value;
      }
      if (label == "state") {
        const std::set<std::string> states = {"WAITING", "RUNNING", "STOPPING", "FAILED", "COMPLETED"};
        EXPECT_TRUE(states.count(value)) << s.name << " state=" << value;
      }
    }
    if (ratio && !std::isnan(s.value)) {
      EXPECT_TRUE(s.value >= 0 && s.value <= 1) << s.name << " = " << s.value << ": a ratio outside 0..1";
    }
  }
}

// The one sample of `family` whose labels include `labels`.
double sample_value(const std::map<std::string, Family>& families, const std::string& family,
                    const std::map<std::string, std::string>& labels = {}, const std::string& sample = "") {
  auto it = families.find(family);
  if (it == families.end()) throw std::runtime_error("no family " + family);
  for (const auto& s : it->second.samples) {
    if (!sample.empty() && s.name != sample) continue;
    bool match = true;
    for (const auto& [k, v] : labels) match = match && s.labels.count(k) && s.labels.at(k) == v;
    if (match) return s.value;
  }
  throw std::runtime_error("no matching sample of " + family);
}

// promtool's exit code and output for `text` given to `promtool check metrics`.
std::pair<int, std::string> promtool_check_metrics(const std::string& text) {
  testing::TempDir dir;
  const std::string file = dir.path() + "/scrape.txt";
  keel::fs::write_file_atomic(file, text);
  const std::string command = std::string(KEEL_PROMTOOL) + " check metrics < " + file + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(MetricsScrape, LiveScrapeFollowsTheConventionsAndPromtoolAcceptsIt) {
  const std::string run = "scrape-run", recipe = "scaled-embed";
  testing::CoordinatorProcess proc(KEEL_COORDINATOR_BIN,
                                   {"--world-size", "2", "--job-id", "scrape", "--run", run, "--recipe", recipe,
                                    "--heartbeat-timeout", "60", "--metrics-port", "0"});
  const std::string address = address_after("listening on ", proc.next_line(std::chrono::seconds(30)));
  const std::string metrics = address_after("metrics on ", proc.next_line(std::chrono::seconds(30)));
  ASSERT_FALSE(address.empty());
  ASSERT_FALSE(metrics.empty());

  testing::FakeRunOptions options;
  options.job_id = "scrape";
  options.layers = 3;
  options.heads = 2;
  {
    testing::FakeRun fake(address, options);
    fake.steps(1, 10);
    fake.spike_skipped(11);
    fake.rollback(12, 10);
    fake.steps(11, 13);
    ASSERT_TRUE(fake.flush());

    const testing::HttpResponse response = testing::http_get("http://" + metrics + "/metrics");
    ASSERT_EQ(response.status, 200);
    const auto families = parse_exposition(response.body);
    std::cout << "families of a live scrape (" << families.size() << "):\n";
    for (const auto& [name, f] : families) {
      std::set<std::string> labels;
      for (const auto& s : f.samples) {
        for (const auto& l : s.labels) labels.insert(l.first);
      }
      std::cout << "  " << name << " (" << f.type << ", " << f.samples.size() << " samples) {";
      for (const auto& l : labels) std::cout << " " << l;
      std::cout << " }\n";
    }

    for (const auto& [name, f] : families) {
      if (kExposerFamilies.count(name)) continue;  // prometheus-cpp's Exposer reports on itself
      check_conventions(f, run, recipe, options.world_size);
    }
    for (const auto& name : kRequiredFamilies) {
      auto it = families.find(name);
      EXPECT_TRUE(it != families.end() && !it->second.samples.empty()) << "family " << name << " missing or empty";
    }

    EXPECT_DOUBLE_EQ(sample_value(families, "keel_loss"), fake.last_loss());
    EXPECT_EQ(sample_value(families, "keel_step"), 13);
    EXPECT_EQ(sample_value(families, "keel_skipped_steps_total"), 1);
    EXPECT_EQ(sample_value(families, "keel_spikes_total", {{"kind", "loss_spike"}}), 1);
    EXPECT_EQ(sample_value(families, "keel_spikes_total", {{"kind", "sustained_spike"}}), 1);
    EXPECT_EQ(sample_value(families, "keel_rollbacks_total", {{"kind", "sustained_spike"}}), 1);
    EXPECT_EQ(sample_value(families, "keel_rollbacks_total", {{"kind", "rollback"}}), 0);
    EXPECT_EQ(sample_value(families, "keel_step_time_seconds", {{"rank", "1"}}, "keel_step_time_seconds_count"),
              14);
    EXPECT_EQ(sample_value(families, "keel_attention_entropy", {{"layer", "block.2"}, {"head", "1"}}), 2.1);
    EXPECT_EQ(families.at("keel_attention_entropy").samples.size(), 6u);
    EXPECT_EQ(families.at("keel_layer_grad_norm").samples.size(), 5u);
    EXPECT_EQ(sample_value(families, "keel_worker_up", {{"rank", "0"}}), 1);
    EXPECT_EQ(sample_value(families, "keel_worker_up", {{"rank", "1"}}), 1);
    EXPECT_EQ(sample_value(families, "keel_job_state", {{"state", "RUNNING"}}), 1);
    EXPECT_EQ(sample_value(families, "keel_metrics_ignored_values_total"), 0);

    if (std::string(KEEL_PROMTOOL).empty()) {
      GTEST_SKIP() << "promtool not installed (Debian: prometheus; scripts/setup.sh installs it)";
    }
    const auto [code, output] = promtool_check_metrics(response.body);
    EXPECT_EQ(code, 0) << "promtool check metrics:\n" << output;
    EXPECT_EQ(output, "") << "promtool check metrics found problems";
    fake.shutdown(0);
  }
  EXPECT_EQ(proc.wait_exit(std::chrono::seconds(30)), 0);
}

}  // namespace
}  // namespace keel::coord
