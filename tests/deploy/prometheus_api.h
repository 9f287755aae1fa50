// Test helpers around a real Prometheus: the fixture that starts one for any coordinator address
// (scripts/prometheus_local.sh, stopped by PID when the fixture goes away), a small client of its
// HTTP API (/api/v1/query, query_range, alerts), and the Grafana dashboard's queries (every panel
// target, annotation and template variable of deploy/grafana/dashboards/*.json, with the dashboard
// variables substituted) so that they can be evaluated against it. Works with any coordinator: a
// stand-in driver today, a real training run tomorrow.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace keel::deploy_testing {

// A Prometheus on loopback scraping `target` (HOST:PORT of a coordinator's /metrics) every second
// and evaluating deploy/prometheus/rules/*.yml every second; its files live under `dir`. The
// constructor returns once Prometheus has scraped the target with success (or, with
// `wait_for_target` false, once it is ready: for a target that starts later, like a training run's
// coordinator); throws std::runtime_error with the script's output otherwise.
class PrometheusFixture {
 public:
  PrometheusFixture(const std::string& dir, const std::string& target, bool wait_for_target = true);
  ~PrometheusFixture();  // stops it by PID
  PrometheusFixture(const PrometheusFixture&) = delete;
  PrometheusFixture& operator=(const PrometheusFixture&) = delete;

  const std::string& address() const { return address_; }  // HOST:PORT of its HTTP API

 private:
  std::string dir_, address_;
};

class PrometheusApi {
 public:
  explicit PrometheusApi(std::string address) : address_(std::move(address)) {}

  // The `data` of a successful answer; throws std::runtime_error with Prometheus's error (e.g. a
  // PromQL parse error) otherwise.
  nlohmann::json query(const std::string& expr) const;
  nlohmann::json query_range(const std::string& expr, double start_unix, double end_unix, double step_seconds) const;
  nlohmann::json alerts() const;  // data.alerts

  // The value of the single series `expr` returns now; nullopt when it returns no series.
  std::optional<double> scalar(const std::string& expr) const;
  // True once an alert named `name` is firing with label run=`run`.
  bool firing(const std::string& name, const std::string& run) const;

 private:
  nlohmann::json get(const std::string& path_and_query) const;
  std::string address_;
};

// Polls `condition` every 200 ms until it is true or `timeout` passed; returns its last result.
bool wait_until(const std::function<bool()>& condition, std::chrono::seconds timeout);

double unix_now();

// One PromQL expression of a dashboard, and where it is (for failure messages).
struct DashboardQuery {
  std::string where;  // e.g. "panel 'Loss' target A", "annotation 'Stability events'"
  std::string expr;
};

// Every panel target (rows and nested panels included) and annotation query of a Grafana
// dashboard JSON, with their raw expressions.
std::vector<DashboardQuery> dashboard_queries(const nlohmann::json& dashboard);

// Template variables of type "query" as (name, query) pairs, e.g. ("run", "label_values(keel_step, run)").
std::vector<std::pair<std::string, std::string>> dashboard_variables(const nlohmann::json& dashboard);

// `expr` with Grafana variables replaced: $name, ${name} and ${name:format} from `values`, plus
// the built-ins $__rate_interval, $__interval and $__range. Throws std::runtime_error naming any
// variable it cannot replace.
std::string substitute_variables(const std::string& expr, const std::map<std::string, std::string>& values);

nlohmann::json load_json(const std::string& path);

}  // namespace keel::deploy_testing
