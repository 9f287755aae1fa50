// End to end with a real Prometheus (Debian's prometheus, started by scripts/prometheus_local.sh
// with deploy/prometheus/rules, scraping and evaluating every second), in two tests:
//  - RealTrainingRun: a short real `keel train` on the CPU (its own keel-coordinator process) with an
//    injected LR spike (debug.inject_lr_spike_at). Through Prometheus's HTTP API: the series the
//    run produces arrive, KeelLossSpike and KeelRollback fire after the injected spike, and every
//    Grafana dashboard query (panels, annotations, variables) is valid PromQL and returns series
//    whenever the families it reads exist for the run.
//  - StandInWorkers: a real keel-coordinator fed over gRPC by the stand-in workers of
//    tests/metrics/metrics_test_driver.h, which reach states a short run cannot (several ranks,
//    exact event counts): no alert on a healthy stretch, then the alerts fire, and every dashboard
//    query returns series.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <thread>

#include "common/fs.h"
#include "common/process.h"

#include "tests/coordinator/coordinator_process.h"
#include "tests/metrics/metrics_test_driver.h"
#include "tests/coordinator/test_util.h"
#include "tests/deploy/prometheus_api.h"

namespace keel::deploy_testing {
namespace {

using coord::testing::address_after;

const std::string kRun = "e2e-run";
const std::string kRecipe = "e2e-recipe";
const std::string kSelector = "{run=\"" + kRun + "\",recipe=\"" + kRecipe + "\"}";

// The keel_* metric families an expression reads (histogram suffixes kept: they are series names).
std::set<std::string> families_read(const std::string& expr) {
  static const std::regex family(R"(keel_[a-z0-9_]+)");
  std::set<std::string> names;
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), family); it != std::sregex_iterator(); ++it)
    names.insert(it->str());
  return names;
}

// Every dashboard query over [start, now]: each must be valid PromQL, and must return at least one
// series when `expects_series(query)` says so. The template variables must offer `values`.
void check_dashboard(const PrometheusApi& api, double start, const std::map<std::string, std::string>& values,
                     const std::function<bool(const std::string&)>& expects_series) {
  const nlohmann::json dashboard = load_json(std::string(KEEL_SOURCE_DIR) + "/deploy/grafana/dashboards/keel-training.json");
  // One step past now: a range query evaluates at start, start + 1, ... <= end, so a counter that
  // changed less than a second before `now` would be past the grid's last point and changes() over
  // it would miss the change (seen once under load: the two annotation queries returned nothing).
  const double end = unix_now() + 1;
  const auto queries = dashboard_queries(dashboard);
  ASSERT_FALSE(queries.empty());
  int with_series = 0;
  for (const auto& q : queries) {
    SCOPED_TRACE(q.where + ": " + q.expr);
    nlohmann::json data;
    try {
      data = api.query_range(substitute_variables(q.expr, values), start, end, 1);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "invalid: " << e.what();
      continue;
    }
    with_series += !data["result"].empty();
    if (expects_series(q.expr)) EXPECT_FALSE(data["result"].empty()) << "returned no series";
  }
  std::cout << "evaluated " << queries.size() << " dashboard queries over " << end - start << " s; "
            << with_series << " returned series\n";

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

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick), for a coordinator whose
// /metrics address Prometheus must know before the coordinator starts.
int free_loopback_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw std::runtime_error("could not find a free loopback port");
  }
  close(fd);
  return ntohs(address.sin_port);
}

TEST(PrometheusEndToEnd, StandInWorkers) {
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

  check_dashboard(api, start, {{"run", kRun}, {"recipe", kRecipe}}, [](const std::string&) { return true; });

  fake->shutdown(0);
  fake.reset();
  EXPECT_EQ(coordinator.wait_exit(std::chrono::seconds(30)), 0);
}

TEST(PrometheusEndToEnd, RealTrainingRun) {
  if (std::string(KEEL_PROMETHEUS).empty()) {
    GTEST_SKIP() << "prometheus not installed (Debian package prometheus; scripts/setup.sh installs it)";
  }
  coord::testing::TempDir dir;
  const std::string run = "prometheus-real-run", recipe = "tiny";  // recipe: the config file's name
  const std::string run_dir = dir.path() + "/" + run, log_path = dir.path() + "/train.log";
  const std::string metrics = "127.0.0.1:" + std::to_string(free_loopback_port());

  // Prometheus first, so that it scrapes the coordinator from its first second: increase() over
  // the event counters needs a sample from before the spike.
  PrometheusFixture prometheus(dir.path() + "/prometheus", metrics, /*wait_for_target=*/false);
  const PrometheusApi api(prometheus.address());
  ASSERT_TRUE(wait_until([&] { return api.scalar("up").has_value(); }, std::chrono::seconds(30)))
      << "Prometheus never tried to scrape " << metrics;
  const double start = unix_now() - 5;

  // 300 steps with an LR spike (x300 for 3 steps) at step 200, diagnostics every 25 steps, MFU
  // against a nominal peak; the coordinator keeps /metrics up for 15 s after the end.
  const std::string command =
      std::string("exec '") + KEEL_BINARY_DIR + "/cli/keel' train '" + KEEL_SOURCE_DIR + "/tests/worker/tiny.yaml'" +
      " --run-dir '" + run_dir + "' --set data.dir='" + KEEL_BINARY_DIR + "/testdata/embedded'" +
      " --set train.steps=300 --set train.eval_every=50 --set checkpoint.every=10 --set diagnostics.every=25" +
      " --set train.peak_flops=1e12 --set debug.inject_lr_spike_at=200 --set debug.inject_lr_spike_factor=300" +
      " --set debug.inject_lr_spike_steps=3 --set metrics.port=" + metrics.substr(metrics.rfind(':') + 1) +
      " --set metrics.linger_seconds=15 > '" + log_path + "' 2>&1";
  process::ChildProcess train({"/bin/bash", "-c", command});
  const std::string selector = "{run=\"" + run + "\",recipe=\"" + recipe + "\"}";

  const bool finished = wait_until([&] { return api.scalar("keel_step" + selector) == 300.0; }, std::chrono::seconds(240));
  const std::string log = fs::read_file(log_path);
  ASSERT_TRUE(finished) << "keel_step never reached 300 in Prometheus; train.log:\n" << log;
  EXPECT_NE(log.find("metrics: http://" + metrics + "/metrics"), std::string::npos) << log;

  // What the run's own records say happened, which the alerts must reflect.
  bool rolled_back = false, spiked = false;
  std::ifstream events(run_dir + "/events.jsonl");
  for (std::string line; std::getline(events, line);) {
    const auto event = nlohmann::json::parse(line);
    spiked = spiked || event.value("kind", "") == "loss_spike" || event.value("kind", "") == "sustained_spike";
    rolled_back = rolled_back || event.value("action", "") == "rollback";
  }
  ASSERT_TRUE(spiked) << "the injected LR spike caused no loss spike; train.log:\n" << log;
  EXPECT_TRUE(rolled_back) << "the injected LR spike was not rolled back; train.log:\n" << log;
  EXPECT_TRUE(wait_until([&] { return api.firing("KeelLossSpike", run); }, std::chrono::seconds(30)))
      << "KeelLossSpike did not fire after the injected spike";
  if (rolled_back) {
    EXPECT_TRUE(wait_until([&] { return api.firing("KeelRollback", run); }, std::chrono::seconds(30)))
        << "KeelRollback did not fire after the rollback";
  }
  EXPECT_FALSE(api.firing("KeelRollbacksExhausted", run));
  EXPECT_GE(api.scalar("sum(keel_spikes_total" + selector + ")").value_or(0), 1.0);
  EXPECT_EQ(api.scalar("keel_worker_up{rank=\"0\",run=\"" + run + "\"}"), 1.0);

  // The families a one-process CPU run must produce (GPU memory is the one it cannot).
  for (const char* family :
       {"keel_loss", "keel_val_loss", "keel_grad_norm", "keel_learning_rate", "keel_tokens_per_second",
        "keel_mfu_ratio", "keel_step_time_seconds_bucket", "keel_update_ratio", "keel_tokens_seen",
        "keel_layer_grad_norm", "keel_attention_entropy", "keel_layer_linearity", "keel_mlp_sparsity_ratio",
        "keel_checkpoint_size_bytes", "keel_checkpoint_save_seconds_count", "keel_worker_heartbeat_age_seconds"}) {
    EXPECT_GE(api.scalar(std::string("count(") + family + selector + ")").value_or(0), 1.0) << family;
  }
  EXPECT_EQ(api.scalar("count(keel_attention_entropy" + selector + ")"), 4.0) << "tiny model: 2 layers x 2 heads";

  // Every dashboard query is valid; each returns series when the families it reads exist for this run.
  std::map<std::string, bool> produced;
  const auto run_has = [&](const std::string& family) {
    if (!produced.count(family)) {
      produced[family] = api.scalar("count({__name__=\"" + family + "\",run=\"" + run + "\"})").value_or(0) > 0;
      if (!produced[family]) std::cout << "not produced by this run: " << family << "\n";
    }
    return produced[family];
  };
  check_dashboard(api, start, {{"run", run}, {"recipe", recipe}}, [&](const std::string& expr) {
    const auto families = families_read(expr);
    for (const auto& family : families)
      if (!run_has(family)) return false;
    return !families.empty();
  });

  EXPECT_EQ(train.wait(), 0) << fs::read_file(log_path);
}

}  // namespace
}  // namespace keel::deploy_testing
