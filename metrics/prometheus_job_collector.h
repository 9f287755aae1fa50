// The job's health as Prometheus sees it, computed when Prometheus scrapes rather than when
// workers report: job state (a state set), generation, world size and registered workers, the
// newest committed checkpoint, and per rank whether it is up, how old its last heartbeat is, its
// step and whether it shut down. Ages only make sense at scrape time, so this is a
// prometheus::Collectable that reads the job snapshot (JobState::snapshot through a JobSnapshotSource) on each Collect(). Torch-free.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <memory>
#include <mutex>

#include "metrics/job_records.h"

namespace keel::coord {

class JobHealthCollector : public prometheus::Collectable {
 public:
  // `constant_labels` (run, recipe) go on every series. `job` must outlive the collector.
  JobHealthCollector(JobSnapshotSource job, const prometheus::Labels& constant_labels);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  void refresh_locked() const;

  JobSnapshotSource job_;
  mutable std::mutex mu_;  // concurrent scrapes refresh one at a time
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>* state_;
  prometheus::Family<prometheus::Gauge>* generation_;
  prometheus::Family<prometheus::Gauge>* world_size_;
  prometheus::Family<prometheus::Gauge>* registered_;
  prometheus::Family<prometheus::Gauge>* latest_committed_;
  prometheus::Family<prometheus::Gauge>* worker_up_;
  prometheus::Family<prometheus::Gauge>* heartbeat_age_;
  prometheus::Family<prometheus::Gauge>* worker_step_;
  prometheus::Family<prometheus::Gauge>* worker_shut_down_;
  mutable bool ranks_seen_ = false;  // per-rank series exist once the first rendezvous completed
};

}  // namespace keel::coord
