// End to end with a real Prometheus: a real keel-coordinator, fed over gRPC by the stand-in workers
// of tests/coordinator/metrics_test_driver.h, is scraped every second by Debian's prometheus
// (scripts/prometheus_local.sh, with deploy/prometheus/rules). Through Prometheus's HTTP API the
// test checks that the series arrive, that no loss-spike alert fires on a healthy run, that
// KeelLossSpike and KeelRollback fire after the driver reports a spike and a rollback, and that
// every Grafana dashboard query (panels, annotations, variables; $run/$recipe substituted) is valid
// and returns series. Only the coordinator's metrics address ties it to the driver, so a real
// training run can take the driver's place.
#include <gtest/gtest.h>

#include <iostream>
#include <regex>
#include <thread>

#include "tests/coordinator/coordinator_process.h"
#include "tests/coordinator/metrics_test_driver.h"
#include "tests/coordinator/test_util.h"
#include "tests/deploy/prometheus_api.h"

namespace keel::deploy_testing {
namespace {

using coord::testing::address_after;

const std::string kRun = "e2e-run";
const std::string kRecipe = "e2e-recipe";
const std::string kSelector = "{run=\"" + kRun + "\",recipe=\"" + kRecipe + "\"}";

// Every dashboard query over [start, now]: each must be valid PromQL and return at least one series.
void check_dashboard(const PrometheusApi& api, double start) {
  const nlohmann::json dashboard = load_json(std::string(KEEL_SOURCE_DIR) + "/deploy/grafana/dashboards/keel-training.json");
  const std::map<std::string, std::string> values = {{"run", kRun}, {"recipe", kRecipe}};
  const double end = unix_now();
  const auto queries = dashboard_queries(dashboard);
  ASSERT_FALSE(queries.empty());
  for (const auto& q : queries) {
    SCOPED_TRACE(q.where + ": " + q.expr);
    nlohmann::json data;
    try {
      data = api.query_range(substitute_variables(q.expr, values), start, end, 1);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "invalid: " << e.what();
      continue;
    }
    EXPECT_FALSE(data["result"].empty()) << "returned no series";
  }
  std::cout << "evaluated " << queries.size() << " dashboard queries over " << end - start << " s\n";

  // label_values(SELECTOR, LABEL): the variable offers our run and recipe.
  static const std::regex label_values(R"(label_values\((.*),\s*([a-z_]+)\))");
  for (const auto& [name, query] : dashboard_variables(dashboard)) {
    SCOPED_TRACE("variable " + name + ": " + query);
    std::smatch m;
    ASSERT_TRUE(std::regex_match(query, m, label_values)) << "not label_values(selector, label)";
    const std::string label = m[2].str();
    const auto data = api.query("count by (" + label + ") (" + substitute_variables(m[1].str(), values) + ")");
    bool offered = false;
    for (const auto& series : data["result"]) {
      offered = offered || series["metric"].value(label, "") == values.at(label);
    }
    EXPECT_TRUE(offered) << "does not offer " << label << "=" << values.at(label);
  }
}

TEST(PrometheusEndToEnd, SeriesAlertsAndEveryDashboardQuery) {
  if (std::string(KEEL_PROMETHEUS).empty()) {
    GTEST_SKIP() << "prometheus not installed (Debian package prometheus; scripts/setup.sh installs it)";
  }
  coord::testing::TempDir dir;
  coord::testing::CoordinatorProcess coordinator(
      KEEL_COORDINATOR_BIN, {"--world-size", "2", "--job-id", "e2e", "--run", kRun, "--recipe", kRecipe,
                             "--heartbeat-timeout", "60", "--metrics-port", "0"});
  const std::string address = address_after("listening on ", coordinator.next_line(std::chrono::seconds(30)));
  const std::string metrics = address_after("metrics on ", coordinator.next_line(std::chrono::seconds(30)));
  ASSERT_FALSE(address.empty());
  ASSERT_FALSE(metrics.empty());

  coord::testing::FakeRunOptions options;
  options.job_id = "e2e";
  options.layers = 2;
  options.heads = 2;
  auto fake = std::make_unique<coord::testing::FakeRun>(address, options);

  PrometheusFixture prometheus(dir.path() + "/prometheus", metrics);
  const PrometheusApi api(prometheus.address());
  const double start = unix_now() - 5;

  // A healthy stretch, slowly enough to span several scrapes.
  for (int step = 1; step <= 20; ++step) {
    fake->steps(step, step);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(fake->flush());
  ASSERT_TRUE(wait_until([&] { return api.scalar("keel_step" + kSelector) == 20.0; }, std::chrono::seconds(30)))
      << "keel_step never reached 20 in Prometheus";
  ASSERT_TRUE(wait_until([&] { return api.scalar("keel_worker_up{rank=\"1\",run=\"" + kRun + "\"}") == 1.0; },
                         std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::seconds(2));  // two rule evaluations on the healthy run
  EXPECT_FALSE(api.firing("KeelLossSpike", kRun)) << "loss-spike alert on a healthy run";
  EXPECT_FALSE(api.firing("KeelRollback", kRun));

  // A loss spike whose update is skipped, then a sustained spike that rolls back to step 20.
  fake->spike_skipped(21);
  fake->steps(22, 24);
  fake->rollback(25, 20);
  fake->recovered(26);
  fake->steps(21, 30);
  ASSERT_TRUE(fake->flush());
  EXPECT_TRUE(wait_until([&] { return api.firing("KeelLossSpike", kRun); }, std::chrono::seconds(30)))
      << "KeelLossSpike did not fire after the spike";
  EXPECT_TRUE(wait_until([&] { return api.firing("KeelRollback", kRun); }, std::chrono::seconds(30)))
      << "KeelRollback did not fire after the rollback";
  EXPECT_FALSE(api.firing("KeelRollbacksExhausted", kRun));
  EXPECT_EQ(api.scalar("sum(keel_spikes_total" + kSelector + ")"), 2.0);
  EXPECT_EQ(api.scalar("sum(keel_rollbacks_total" + kSelector + ")"), 1.0);
  EXPECT_EQ(api.scalar("keel_skipped_steps_total" + kSelector), 1.0);
  EXPECT_EQ(api.scalar("keel_recoveries_total" + kSelector), 1.0);
  EXPECT_EQ(api.scalar("count(keel_attention_entropy" + kSelector + ")"), 4.0) << "2 layers x 2 heads";
  EXPECT_EQ(api.scalar("keel_job_state{state=\"RUNNING\",run=\"" + kRun + "\"}"), 1.0);

  check_dashboard(api, start);

  fake->shutdown(0);
  fake.reset();
  EXPECT_EQ(coordinator.wait_exit(std::chrono::seconds(30)), 0);
}

}  // namespace
}  // namespace keel::deploy_testing
