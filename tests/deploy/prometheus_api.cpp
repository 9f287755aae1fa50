// Prometheus fixture, HTTP API client and dashboard query extraction for tests (see prometheus_api.h).
#include "tests/deploy/prometheus_api.h"

#include <stdlib.h>
#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/metrics/test_http.h"

namespace keel::deploy_testing {
namespace {

const std::string kScript = std::string(KEEL_SOURCE_DIR) + "/scripts/prometheus_local.sh";

// Runs a shell command; returns its exit code and combined output.
std::pair<int, std::string> run_command(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run: " + command);
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string shell_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string format_seconds(double seconds) {
  std::ostringstream s;
  s.precision(15);
  s << seconds;
  return s.str();
}

void collect_panel_queries(const nlohmann::json& panels, std::vector<DashboardQuery>& out) {
  for (const auto& panel : panels) {
    const std::string title = panel.value("title", "(untitled)");
    for (const auto& target : panel.value("targets", nlohmann::json::array())) {
      out.push_back({"panel '" + title + "' target " + target.value("refId", "?"), target.value("expr", "")});
    }
    if (panel.contains("panels")) collect_panel_queries(panel["panels"], out);
  }
}

}  // namespace

PrometheusFixture::PrometheusFixture(const std::string& dir, const std::string& target, bool wait_for_target)
    : dir_(dir) {
  if (std::string(KEEL_PROMETHEUS).size() > 0) setenv("KEEL_PROMETHEUS", KEEL_PROMETHEUS, 1);
  setenv("KEEL_PROMETHEUS_WAIT_TARGET", wait_for_target ? "1" : "0", 1);
  const auto [code, output] = run_command("bash " + shell_quoted(kScript) + " start " + shell_quoted(dir) + " " + shell_quoted(target));
  const std::string marker = "prometheus on ";
  const auto at = output.find(marker);
  if (code != 0 || at == std::string::npos) {
    throw std::runtime_error("prometheus_local.sh start failed (exit " + std::to_string(code) + "):\n" + output);
  }
  const auto end = output.find(' ', at + marker.size());
  address_ = output.substr(at + marker.size(), end - at - marker.size());
}

PrometheusFixture::~PrometheusFixture() {
  const auto result = run_command("bash " + shell_quoted(kScript) + " stop " + shell_quoted(dir_));
  if (result.first != 0) fprintf(stderr, "prometheus_local.sh stop failed:\n%s\n", result.second.c_str());
}

nlohmann::json PrometheusApi::get(const std::string& path_and_query) const {
  const std::string url = "http://" + address_ + path_and_query;
  const auto response = coord::testing::http_get(url);
  nlohmann::json body;
  try {
    body = nlohmann::json::parse(response.body);
  } catch (const std::exception& e) {
    throw std::runtime_error("GET " + url + ": HTTP " + std::to_string(response.status) + ", not JSON: " +
                             response.body.substr(0, 300));
  }
  if (body.value("status", "") != "success") {
    throw std::runtime_error(body.value("errorType", "error") + ": " + body.value("error", response.body));
  }
  return body["data"];
}

nlohmann::json PrometheusApi::query(const std::string& expr) const {
  return get("/api/v1/query?query=" + coord::testing::url_encode(expr));
}

nlohmann::json PrometheusApi::query_range(const std::string& expr, double start_unix, double end_unix,
                                          double step_seconds) const {
  return get("/api/v1/query_range?query=" + coord::testing::url_encode(expr) + "&start=" + format_seconds(start_unix) +
             "&end=" + format_seconds(end_unix) + "&step=" + format_seconds(step_seconds));
}

nlohmann::json PrometheusApi::alerts() const {
  return get("/api/v1/alerts")["alerts"];
}

std::optional<double> PrometheusApi::scalar(const std::string& expr) const {
  const auto data = query(expr);
  const auto& result = data["result"];
  if (result.empty()) return std::nullopt;
  if (result.size() > 1) throw std::runtime_error(expr + " returned " + std::to_string(result.size()) + " series");
  return std::stod(result[0]["value"][1].get<std::string>());
}

bool PrometheusApi::firing(const std::string& name, const std::string& run) const {
  for (const auto& alert : alerts()) {
    const auto& labels = alert["labels"];
    if (labels.value("alertname", "") == name && labels.value("run", "") == run &&
        alert.value("state", "") == "firing") {
      return true;
    }
  }
  return false;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::seconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<DashboardQuery> dashboard_queries(const nlohmann::json& dashboard) {
  std::vector<DashboardQuery> out;
  collect_panel_queries(dashboard.value("panels", nlohmann::json::array()), out);
  const auto annotations = dashboard.value("annotations", nlohmann::json::object());
  for (const auto& a : annotations.value("list", nlohmann::json::array())) {
    if (a.value("builtIn", 0) == 1) continue;  // Grafana's own "Annotations & Alerts"
    out.push_back({"annotation '" + a.value("name", "(unnamed)") + "'", a.value("expr", "")});
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> dashboard_variables(const nlohmann::json& dashboard) {
  std::vector<std::pair<std::string, std::string>> out;
  const auto templating = dashboard.value("templating", nlohmann::json::object());
  for (const auto& v : templating.value("list", nlohmann::json::array())) {
    if (v.value("type", "") != "query") continue;
    const auto& q = v["query"];
    out.emplace_back(v.value("name", ""), q.is_string() ? q.get<std::string>() : q.value("query", ""));
  }
  return out;
}

std::string substitute_variables(const std::string& expr, const std::map<std::string, std::string>& values) {
  static const std::map<std::string, std::string> builtins = {
      {"__rate_interval", "1m"}, {"__interval", "5s"}, {"__range", "5m"}, {"__range_s", "300"}};
  auto is_name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  std::string out;
  for (size_t i = 0; i < expr.size(); ++i) {
    if (expr[i] != '$') {
      out += expr[i];
      continue;
    }
    std::string name;
    size_t end = i + 1;
    if (end < expr.size() && expr[end] == '{') {
      const size_t close = expr.find('}', end);
      if (close == std::string::npos) throw std::runtime_error("unclosed ${ in: " + expr);
      name = expr.substr(end + 1, close - end - 1);
      name = name.substr(0, name.find(':'));  // ${run:regex} -> run
      end = close + 1;
    } else {
      while (end < expr.size() && is_name_char(expr[end])) name += expr[end++];
    }
    auto it = values.find(name);
    auto builtin = builtins.find(name);
    if (it != values.end()) {
      out += it->second;
    } else if (builtin != builtins.end()) {
      out += builtin->second;
    } else {
      throw std::runtime_error("unknown dashboard variable '$" + name + "' in: " + expr);
    }
    i = end - 1;
  }
  return out;
}

nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + " is not valid JSON: " + e.what());
  }
}

}  // namespace keel::deploy_testing
