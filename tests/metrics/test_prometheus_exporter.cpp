// MetricsExporter in-process (no HTTP): how worker reports map onto families (rank 0's training
// values, every rank's per-rank values, layer/head labels), event counting (rank 0 only, a rollback
// announced twice counted once), counters that exist at 0, and scrape-time job health from JobState.
#include <gtest/gtest.h>

#include <optional>

#include "coordinator/job_state.h"
#include "metrics/prometheus_exporter.h"
#include "tests/coordinator/test_util.h"

namespace keel::coord {
namespace {

using Labels = std::map<std::string, std::string>;

// The exporter reads the job through a snapshot source, as the coordinator wires it.
JobSnapshotSource snapshot_of(const JobState& job) {
  return [&job] { return job.snapshot(); };
}

// The value of the one series of family `name` whose labels include `labels` (a histogram's
// sample count); nullopt when there is none. Fails the test when several match.
std::optional<double> value_of(const std::vector<prometheus::MetricFamily>& families, const std::string& name,
                               const Labels& labels = {}) {
  std::optional<double> found;
  for (const auto& family : families) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      size_t matched = 0;
      for (const auto& label : metric.label) {
        auto it = labels.find(label.name);
        if (it != labels.end() && it->second == label.value) ++matched;
      }
      if (matched != labels.size()) continue;
      EXPECT_FALSE(found.has_value()) << "several series of " << name << " match";
      switch (family.type) {
        case prometheus::MetricType::Counter: found = metric.counter.value; break;
        case prometheus::MetricType::Gauge: found = metric.gauge.value; break;
        case prometheus::MetricType::Histogram: found = static_cast<double>(metric.histogram.sample_count); break;
        default: found = metric.untyped.value;
      }
    }
  }
  return found;
}

size_t series_count(const std::vector<prometheus::MetricFamily>& families, const std::string& name) {
  for (const auto& family : families) {
    if (family.name == name) return family.metric.size();
  }
  return 0;
}

JobOptions job_options(int world) {
  JobOptions o;
  o.job_id = "job";
  o.world_size = world;
  return o;
}

MetricsOptions labelled() {
  MetricsOptions o;
  o.run = "run-a";
  o.recipe = "vanilla";
  return o;
}

EventRecord event(const std::string& kind, int64_t step, const std::string& action) {
  return {0, step, kind, "{}", action};
}

TEST(MetricsExporter, TrainingValuesComeFromRankZeroAndPerRankValuesFromEveryRank) {
  JobState job(job_options(2));
  MetricsExporter exporter(labelled(), snapshot_of(job));
  exporter.record(0, {{7, {{"loss", 2.5}, {"lr", 1e-3}, {"mfu", 0.4}, {"gpu_memory_bytes", 100},
                            {"optimizer_state_bytes", 4000}}}},
                  {});
  exporter.record(1, {{7, {{"loss", 9.0}, {"gpu_memory_bytes", 200}, {"step_time_seconds", 0.5},
                            {"optimizer_state_bytes", 3992}}}},
                  {});
  const auto f = exporter.collect();
  EXPECT_EQ(value_of(f, "keel_loss"), 2.5);
  EXPECT_EQ(series_count(f, "keel_loss"), 1u) << "rank 1's loss must not become a series";
  EXPECT_EQ(value_of(f, "keel_learning_rate"), 1e-3);
  EXPECT_EQ(value_of(f, "keel_mfu_ratio"), 0.4);
  EXPECT_EQ(value_of(f, "keel_step"), 7);
  EXPECT_EQ(value_of(f, "keel_gpu_memory_bytes", {{"rank", "0"}}), 100);
  EXPECT_EQ(value_of(f, "keel_gpu_memory_bytes", {{"rank", "1"}}), 200);
  EXPECT_EQ(value_of(f, "keel_optimizer_state_bytes", {{"rank", "0"}}), 4000);
  EXPECT_EQ(value_of(f, "keel_optimizer_state_bytes", {{"rank", "1"}}), 3992);
  EXPECT_EQ(value_of(f, "keel_step_time_seconds", {{"rank", "1"}}), 1);
  EXPECT_EQ(value_of(f, "keel_worker_reported_steps_total", {{"rank", "1"}}), 1);
  EXPECT_EQ(value_of(f, "keel_loss", {{"run", "run-a"}, {"recipe", "vanilla"}}), 2.5);
  EXPECT_GT(value_of(f, "keel_last_step_timestamp_seconds").value_or(0), 1.6e9);
}

TEST(MetricsExporter, LayerAndHeadKeysBecomeLabels) {
  JobState job(job_options(1));
  MetricsExporter exporter(labelled(), snapshot_of(job));
  exporter.record(0,
                  {{5,
                    {{"layer_grad_norm.block.1", 0.3},
                     {"layer_grad_norm.embedding", 0.1},
                     {"diag.layer1.head3.attention_entropy", 2.2},
                     {"diag.layer1.head3.attention_normalised_entropy", 0.6},
                     {"diag.layer0.mlp_sparsity", 0.7},
                     {"diag.attention_entropy_overload_fraction", 0.1}}}},
                  {});
  const auto f = exporter.collect();
  EXPECT_EQ(value_of(f, "keel_layer_grad_norm", {{"layer", "block.1"}}), 0.3);
  EXPECT_EQ(value_of(f, "keel_layer_grad_norm", {{"layer", "embedding"}}), 0.1);
  EXPECT_EQ(value_of(f, "keel_attention_entropy", {{"layer", "block.1"}, {"head", "3"}}), 2.2);
  EXPECT_EQ(value_of(f, "keel_attention_normalised_entropy_ratio", {{"layer", "block.1"}, {"head", "3"}}), 0.6);
  EXPECT_EQ(value_of(f, "keel_mlp_sparsity_ratio", {{"layer", "block.0"}}), 0.7);
  EXPECT_EQ(value_of(f, "keel_attention_entropy_overload_ratio"), 0.1);
}

TEST(MetricsExporter, CheckpointsAndSkippedSteps) {
  JobState job(job_options(1));
  MetricsExporter exporter(labelled(), snapshot_of(job));
  exporter.record(0, {{10, {{"checkpoint_save_seconds", 1.5}, {"checkpoint_bytes", 4096}, {"skipped", 0}}},
                      {11, {{"skipped", 1}}},
                      {12, {{"skipped", 0}}}},
                  {});
  const auto f = exporter.collect();
  EXPECT_EQ(value_of(f, "keel_checkpoint_save_seconds", {{"rank", "0"}}), 1);
  EXPECT_EQ(value_of(f, "keel_checkpoint_size_bytes", {{"rank", "0"}}), 4096);
  EXPECT_EQ(value_of(f, "keel_skipped_steps_total"), 1);
  EXPECT_EQ(value_of(f, "keel_step"), 12);
}

TEST(MetricsExporter, CountersExistAtZeroBeforeAnyEvent) {
  JobState job(job_options(1));
  MetricsExporter exporter(labelled(), snapshot_of(job));
  const auto f = exporter.collect();
  for (const auto& kind : detection_kinds()) EXPECT_EQ(value_of(f, "keel_spikes_total", {{"kind", kind}}), 0);
  for (const auto& kind : trigger_kinds()) {
    EXPECT_EQ(value_of(f, "keel_rollbacks_total", {{"kind", kind}}), 0);
    EXPECT_EQ(value_of(f, "keel_aborts_total", {{"kind", kind}}), 0);
    EXPECT_EQ(value_of(f, "keel_restarts_total", {{"kind", kind}}), 0);
  }
  EXPECT_EQ(value_of(f, "keel_skipped_steps_total"), 0);
  EXPECT_EQ(value_of(f, "keel_recoveries_total"), 0);
  EXPECT_EQ(series_count(f, "keel_loss"), 0u) << "no loss before the first step";
}

TEST(MetricsExporter, EventsAreCountedFromRankZeroAndARollbackAnnouncedTwiceOnce) {
  JobState job(job_options(2));
  MetricsExporter exporter(labelled(), snapshot_of(job));
  const std::vector<EventRecord> events = {
      event("loss_spike", 20, "skip_update"), event("sustained_spike", 22, "rollback"),
      event("rollback", 22, "rollback"),      event("recovered", 30, "apply"),
      event("sustained_spike", 22, "rollback"),  // the same step again after the rollback: a new one
      event("grad_explosion", 40, "abort"),   event("abort", 40, "abort"),
      event("mystery", 41, "restart"),        event("restart", 42, "remedy_restart")};
  exporter.record(1, {}, events);  // the same verdicts from rank 1 are not counted again
  exporter.record(0, {}, events);
  const auto f = exporter.collect();
  EXPECT_EQ(value_of(f, "keel_spikes_total", {{"kind", "loss_spike"}}), 1);
  EXPECT_EQ(value_of(f, "keel_spikes_total", {{"kind", "sustained_spike"}}), 2);
  EXPECT_EQ(value_of(f, "keel_spikes_total", {{"kind", "grad_explosion"}}), 1);
  EXPECT_EQ(value_of(f, "keel_rollbacks_total", {{"kind", "sustained_spike"}}), 2);
  EXPECT_EQ(value_of(f, "keel_rollbacks_total", {{"kind", "rollback"}}), 0);
  EXPECT_EQ(value_of(f, "keel_recoveries_total"), 1);
  EXPECT_EQ(value_of(f, "keel_aborts_total", {{"kind", "grad_explosion"}}), 1);
  EXPECT_EQ(value_of(f, "keel_aborts_total", {{"kind", "abort"}}), 0);
  EXPECT_EQ(value_of(f, "keel_restarts_total", {{"kind", "restart"}}), 1);
  EXPECT_EQ(value_of(f, "keel_worker_events_total", {{"rank", "1"}}), events.size());
  EXPECT_EQ(series_count(f, "keel_spikes_total"), detection_kinds().size()) << "no series for kind 'mystery'";
}

TEST(MetricsExporter, UnknownValueKeysAreCountedNotExported) {
  JobState job(job_options(1));
  MetricsExporter exporter(labelled(), snapshot_of(job));
  exporter.record(0, {{1, {{"loss", 1.0}, {"tokens_per_s", 5.0}, {"layer_grad_norm.block.x", 1.0}}}}, {});
  const auto f = exporter.collect();
  EXPECT_EQ(value_of(f, "keel_metrics_ignored_values_total"), 2);
  EXPECT_EQ(series_count(f, "keel_layer_grad_norm"), 0u);
  EXPECT_EQ(series_count(f, "keel_tokens_per_second"), 0u);
}

TEST(MetricsExporter, JobHealthIsReadAtScrapeTime) {
  SteadyClock::time_point now = SteadyClock::now();
  JobOptions o = job_options(2);
  o.heartbeat_timeout_seconds = 5;
  o.clock = [&now] { return now; };
  JobState job(o);
  MetricsExporter exporter(labelled(), snapshot_of(job));
  auto f = exporter.collect();
  EXPECT_EQ(value_of(f, "keel_job_state", {{"state", "WAITING"}}), 1);
  EXPECT_EQ(value_of(f, "keel_job_state", {{"state", "RUNNING"}}), 0);
  EXPECT_EQ(series_count(f, "keel_worker_up"), 0u) << "no per-rank series before the rendezvous";

  testing::run_concurrently(2, [&](int i) {
    WorkerInfo w;
    w.host = "h";
    w.local_rank = i;
    return job.register_worker("job", w, SteadyClock::now() + std::chrono::seconds(10)).rank;
  });
  now += std::chrono::seconds(2);
  job.heartbeat("job", 0, 1, 42);
  f = exporter.collect();
  EXPECT_EQ(value_of(f, "keel_job_state", {{"state", "RUNNING"}}), 1);
  EXPECT_EQ(value_of(f, "keel_job_world_size"), 2);
  EXPECT_EQ(value_of(f, "keel_worker_up", {{"rank", "1"}}), 1);
  EXPECT_EQ(value_of(f, "keel_worker_heartbeat_age_seconds", {{"rank", "1"}}), 2.0);
  EXPECT_EQ(value_of(f, "keel_worker_heartbeat_age_seconds", {{"rank", "0"}}), 0.0);
  EXPECT_EQ(value_of(f, "keel_worker_step", {{"rank", "0"}}), 42);

  now += std::chrono::seconds(4);  // rank 1 silent for 6 s > 5 s
  job.check_heartbeats();
  f = exporter.collect();
  EXPECT_EQ(value_of(f, "keel_worker_up", {{"rank", "1"}}), 0);
  EXPECT_EQ(value_of(f, "keel_worker_up", {{"rank", "0"}}), 1);
  EXPECT_EQ(value_of(f, "keel_job_state", {{"state", "FAILED"}}), 1);
  EXPECT_EQ(value_of(f, "keel_job_state", {{"state", "RUNNING"}}), 0);
}

TEST(MetricsExporter, RefusesEmptyLabelsAndBadPorts) {
  JobState job(job_options(1));
  MetricsOptions o = labelled();
  o.run = "";
  EXPECT_THROW(MetricsExporter(o, snapshot_of(job)), KeelError);
  o = labelled();
  o.port = -2;
  EXPECT_THROW(MetricsExporter(o, snapshot_of(job)), KeelError);
}

TEST(MetricsExporter, ServesOnAFreePortOnlyWhenAsked) {
  JobState job(job_options(1));
  MetricsExporter off(labelled(), snapshot_of(job));
  off.start();
  EXPECT_FALSE(off.serving());
  MetricsOptions o = labelled();
  o.port = 0;
  MetricsExporter on(o, snapshot_of(job));
  on.start();
  ASSERT_TRUE(on.serving());
  EXPECT_GT(on.port(), 0);
  EXPECT_EQ(on.address(), "127.0.0.1:" + std::to_string(on.port()));
  o.port = on.port();
  MetricsExporter clash(o, snapshot_of(job));
  EXPECT_THROW(clash.start(), KeelError);
}

}  // namespace
}  // namespace keel::coord
