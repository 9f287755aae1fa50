// The Grafana files of deploy/grafana/ without a Grafana server: the provisioning files name a
// Prometheus data source and a file provider; the dashboard has the run and recipe variables, every
// panel has queries on that data source, every keel_ selector honours $run and $recipe, the
// per-layer and per-head diagnostics are heat maps, and stability events are annotations. Whether
// each query works is checked against a real Prometheus in prometheus_e2e_test.cpp.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <regex>
#include <set>

#include "tests/deploy/prometheus_api.h"

namespace keel::deploy_testing {
namespace {

const std::string kGrafana = std::string(KEEL_SOURCE_DIR) + "/deploy/grafana";
const std::string kDashboard = kGrafana + "/dashboards/keel-training.json";

TEST(GrafanaProvisioning, DatasourceAndDashboardProvider) {
  const YAML::Node datasources = YAML::LoadFile(kGrafana + "/provisioning/datasources/keel-prometheus.yaml");
  EXPECT_EQ(datasources["apiVersion"].as<int>(), 1);
  ASSERT_EQ(datasources["datasources"].size(), 1u);
  const YAML::Node ds = datasources["datasources"][0];
  EXPECT_EQ(ds["type"].as<std::string>(), "prometheus");
  EXPECT_EQ(ds["uid"].as<std::string>(), "keel-prometheus");
  EXPECT_EQ(ds["url"].as<std::string>(), "$KEEL_PROMETHEUS_URL");

  const YAML::Node dashboards = YAML::LoadFile(kGrafana + "/provisioning/dashboards/keel.yaml");
  ASSERT_EQ(dashboards["providers"].size(), 1u);
  const YAML::Node provider = dashboards["providers"][0];
  EXPECT_EQ(provider["type"].as<std::string>(), "file");
  EXPECT_EQ(provider["options"]["path"].as<std::string>(), "$KEEL_GRAFANA_DASHBOARDS");
}

TEST(GrafanaDashboard, VariablesPanelsAndAnnotations) {
  const nlohmann::json dashboard = load_json(kDashboard);
  EXPECT_EQ(dashboard.value("uid", ""), "keel-training");

  std::set<std::string> variables;
  for (const auto& v : dashboard["templating"]["list"]) {
    variables.insert(v.value("name", ""));
    if (v.value("type", "") == "datasource") {
      EXPECT_EQ(v["current"].value("value", ""), "keel-prometheus") << "default data source is the provisioned one";
    }
    if (v.value("type", "") == "query") {
      EXPECT_TRUE(v.value("multi", false) && v.value("includeAll", false)) << v.value("name", "") << ": compare runs";
    }
  }
  EXPECT_TRUE(variables.count("run") && variables.count("recipe") && variables.count("datasource"));

  std::set<std::string> heatmap_metrics;
  int panels = 0;
  for (const auto& panel : dashboard["panels"]) {
    if (panel.value("type", "") == "row") continue;
    ++panels;
    const std::string title = panel.value("title", "");
    EXPECT_EQ(panel["datasource"].value("uid", ""), "${datasource}") << title;
    ASSERT_FALSE(panel.value("targets", nlohmann::json::array()).empty()) << title << ": no query";
    for (const auto& target : panel["targets"]) {
      EXPECT_FALSE(target.value("expr", "").empty()) << title;
      if (panel.value("type", "") == "heatmap") {
        static const std::regex metric("keel_[a-z_]+");
        std::smatch m;
        const std::string expr = target.value("expr", "");
        if (std::regex_search(expr, m, metric)) heatmap_metrics.insert(m.str());
      }
    }
  }
  EXPECT_GE(panels, 20);
  for (const char* m : {"keel_layer_grad_norm", "keel_attention_normalised_entropy_ratio", "keel_attention_entropy",
                        "keel_layer_linearity", "keel_mlp_sparsity_ratio"}) {
    EXPECT_TRUE(heatmap_metrics.count(m)) << m << " is not shown as a heat map";
  }

  const auto queries = dashboard_queries(dashboard);
  int annotations = 0;
  static const std::regex selector("(keel_[a-z_]+)(\\{[^}]*\\})?");
  for (const auto& q : queries) {
    if (q.where.rfind("annotation", 0) == 0) ++annotations;
    ASSERT_FALSE(q.expr.empty()) << q.where;
    for (auto it = std::sregex_iterator(q.expr.begin(), q.expr.end(), selector); it != std::sregex_iterator(); ++it) {
      const std::string labels = (*it)[2].str();
      EXPECT_NE(labels.find("run=~\"$run\""), std::string::npos) << q.where << ": " << (*it)[0].str() << " ignores $run";
      EXPECT_NE(labels.find("recipe=~\"$recipe\""), std::string::npos)
          << q.where << ": " << (*it)[0].str() << " ignores $recipe";
    }
  }
  EXPECT_EQ(annotations, 2) << "stability events and rollbacks/aborts/restarts as annotations";
}

TEST(GrafanaDashboard, SubstitutionReplacesEveryVariable) {
  const std::map<std::string, std::string> values = {{"run", "r"}, {"recipe", "x"}};
  EXPECT_EQ(substitute_variables("a{run=~\"$run\",recipe=~\"${recipe}\"}[$__rate_interval]", values),
            "a{run=~\"r\",recipe=~\"x\"}[1m]");
  EXPECT_EQ(substitute_variables("${run:regex}", values), "r");
  EXPECT_THROW(substitute_variables("a{x=\"$unknown\"}", values), std::runtime_error);
}

}  // namespace
}  // namespace keel::deploy_testing
