// Scrape-time job health (see metrics_job_collector.h).
#include "metrics/prometheus_job_collector.h"

#include <string>

namespace keel::coord {
namespace {

constexpr JobPhase kAllPhases[] = {JobPhase::kWaiting, JobPhase::kRunning, JobPhase::kStopping,
                                   JobPhase::kFailed, JobPhase::kCompleted};

prometheus::Family<prometheus::Gauge>* gauge_family(prometheus::Registry& registry, const std::string& name,
                                                    const std::string& help,
                                                    const prometheus::Labels& constant_labels) {
  return &prometheus::BuildGauge().Name(name).Help(help).Labels(constant_labels).Register(registry);
}

}  // namespace

JobHealthCollector::JobHealthCollector(JobSnapshotSource job, const prometheus::Labels& constant_labels)
    : job_(std::move(job)), registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  state_ = gauge_family(r, "keel_job_state",
                        "1 for the job's current state (WAITING, RUNNING, STOPPING, FAILED, COMPLETED), "
                        "0 for the others",
                        constant_labels);
  generation_ = gauge_family(r, "keel_job_generation",
                             "Generation of the job: incremented on each (re)start of the rendezvous",
                             constant_labels);
  world_size_ = gauge_family(r, "keel_job_world_size", "Number of worker processes of the job", constant_labels);
  registered_ = gauge_family(r, "keel_job_registered_workers",
                             "Workers registered in the current rendezvous", constant_labels);
  latest_committed_ = gauge_family(r, "keel_checkpoint_latest_committed_step",
                                   "Newest step whose checkpoint all shard writers committed (-1: none)",
                                   constant_labels);
  worker_up_ = gauge_family(r, "keel_worker_up",
                            "1 while the rank is registered in the current generation and not declared "
                            "dead (missed heartbeats), else 0",
                            constant_labels);
  heartbeat_age_ = gauge_family(r, "keel_worker_heartbeat_age_seconds",
                                "Seconds since the rank's last heartbeat", constant_labels);
  worker_step_ = gauge_family(r, "keel_worker_step", "Newest step the rank reported", constant_labels);
  worker_shut_down_ = gauge_family(r, "keel_worker_shut_down",
                                   "1 once the rank sent its orderly Shutdown, else 0", constant_labels);
  for (JobPhase phase : kAllPhases) state_->Add({{"state", phase_name(phase)}}).Set(0);
}

std::vector<prometheus::MetricFamily> JobHealthCollector::Collect() const {
  std::lock_guard<std::mutex> lock(mu_);
  refresh_locked();
  return registry_->Collect();
}

void JobHealthCollector::refresh_locked() const {
  const JobSnapshot snap = job_();
  for (JobPhase phase : kAllPhases) {
    state_->Add({{"state", phase_name(phase)}}).Set(phase == snap.phase ? 1 : 0);
  }
  generation_->Add({}).Set(static_cast<double>(snap.generation));
  world_size_->Add({}).Set(snap.world_size);
  registered_->Add({}).Set(snap.registered);
  latest_committed_->Add({}).Set(static_cast<double>(snap.latest_committed_step));

  if (!snap.ranks.empty()) ranks_seen_ = true;
  if (!ranks_seen_) return;  // no per-rank series before the first rendezvous completes
  // During a restart's rendezvous (no ranks yet) every rank is down; its other series keep the
  // values of the last generation.
  for (int rank = 0; rank < snap.world_size; ++rank) {
    const prometheus::Labels labels{{"rank", std::to_string(rank)}};
    if (static_cast<size_t>(rank) >= snap.ranks.size()) {
      worker_up_->Add(labels).Set(0);
      continue;
    }
    const RankSnapshot& r = snap.ranks[rank];
    worker_up_->Add(labels).Set(r.alive ? 1 : 0);
    heartbeat_age_->Add(labels).Set(r.last_heartbeat_age_seconds);
    worker_step_->Add(labels).Set(static_cast<double>(r.last_step));
    worker_shut_down_->Add(labels).Set(r.shut_down ? 1 : 0);
  }
}

}  // namespace keel::coord
