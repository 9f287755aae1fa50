// /metrics of the coordinator, with prometheus-cpp: the families fed by the workers' StepMetrics
// and Events (loss, grad norm, tokens/s, MFU, step time, skipped steps, spikes, rollbacks,
// checkpoints, GPU memory, per-layer and per-head diagnostics), the scrape-time job health of
// JobHealthCollector, and the civetweb Exposer that serves them. Workers serve no HTTP: their
// numbers reach this process over gRPC (ReportMetrics), and the service hands each accepted batch
// to record(), which only touches in-memory metrics (a few map look-ups and atomic updates per
// value) so a ReportMetrics handler is never held up by a scrape.
//
// Conventions (tests/metrics/test_metrics_scrape.cpp checks them on a live scrape): `keel_`
// prefix, base units (seconds, bytes, ratios 0..1), counters end in `_total`, and bounded labels
// only: run and recipe on every series, plus rank, layer, head, kind (and state on keel_job_state).
// Training-wide values (loss, grad norm, diagnostics, events) come from rank 0, which reports the
// global values after the step's reductions (every rank's monitor reaches the same verdict);
// per-rank values (step time, GPU memory, checkpoint saves) come from every rank with a rank label.
// Torch-free: civetweb cannot start its threads in a LibTorch-CUDA process (docs/gpu.md).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "metrics/job_records.h"
#include "metrics/prometheus_job_collector.h"
#include "metrics/metric_keys.h"

namespace keel::coord {

struct MetricsOptions {
  std::string address = "127.0.0.1";  // interface to serve /metrics on (loopback by default)
  int port = -1;                      // -1: no HTTP endpoint; 0: pick a free port
  std::string run = "default";        // `run` label on every series
  std::string recipe = "unknown";     // `recipe` label on every series
};

class MetricsExporter {
 public:
  // Throws KeelError for an empty run or recipe label or a port below -1. `job` must outlive this.
  MetricsExporter(MetricsOptions options, JobSnapshotSource job);
  ~MetricsExporter();
  MetricsExporter(const MetricsExporter&) = delete;
  MetricsExporter& operator=(const MetricsExporter&) = delete;

  // Serves /metrics when options.port >= 0; throws KeelError naming the address if it cannot.
  void start();
  bool serving() const { return exposer_ != nullptr; }
  int port() const { return port_; }  // the bound port once serving
  std::string address() const;        // HOST:PORT once serving ("[::1]:PORT" for IPv6)

  // Maps one accepted MetricsBatch of `rank` onto the families. Never throws for unknown keys or
  // kinds: unknown value keys are counted in keel_metrics_ignored_values_total.
  void record(int rank, const std::vector<StepRecord>& steps, const std::vector<EventRecord>& events);

  // Everything a scrape would see (for tests and debugging).
  std::vector<prometheus::MetricFamily> collect() const;

 private:
  using GaugeFamily = prometheus::Family<prometheus::Gauge>;
  using CounterFamily = prometheus::Family<prometheus::Counter>;
  using HistogramFamily = prometheus::Family<prometheus::Histogram>;

  GaugeFamily& gauge(const std::string& name, const std::string& help);
  CounterFamily& counter(const std::string& name, const std::string& help);
  HistogramFamily& histogram(const std::string& name, const std::string& help);
  void record_value(int rank, const std::string& key, double value);
  void record_event(const EventRecord& event);
  void count_consequence(Consequence consequence, const std::string& trigger_kind, int64_t step,
                         bool from_lifecycle);

  MetricsOptions options_;
  prometheus::Labels constant_labels_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<JobHealthCollector> job_health_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = -1;

  // Gauges set from rank 0's values, by value metric (labels from the key: layer, head).
  std::map<ValueMetric, GaugeFamily*> training_gauges_;
  GaugeFamily* step_;
  GaugeFamily* last_step_time_;
  GaugeFamily* gpu_memory_;
  GaugeFamily* optimizer_state_;
  GaugeFamily* checkpoint_size_;
  HistogramFamily* step_time_;
  HistogramFamily* checkpoint_save_;
  CounterFamily* skipped_;
  CounterFamily* spikes_;
  CounterFamily* recoveries_;
  CounterFamily* rollbacks_;
  CounterFamily* aborts_;
  CounterFamily* restarts_;
  CounterFamily* reported_steps_;
  CounterFamily* events_received_;
  CounterFamily* ignored_values_;

  // A rollback (abort, restart) may be announced twice: by the detection event whose action it is
  // and by a lifecycle event of the same step. The second of such a pair is not counted again.
  struct LastConsequence {
    int64_t step = -1;
    bool from_lifecycle = false;
    bool paired = true;  // true: the next event starts a new pair
  };
  std::mutex events_mu_;
  std::map<Consequence, LastConsequence> last_consequence_;
};

}  // namespace keel::coord
