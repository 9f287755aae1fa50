// A stand-in for a training job's workers that talks to a real coordinator through
// coordinator_client.h: it registers every rank, sends heartbeats, and streams StepMetrics with
// exactly the value names the worker commits to (loss, val_loss, grad_norm, lr, tokens_per_second,
// mfu, step_time_seconds, skipped, update_ratio, tokens_seen, gpu_memory_bytes,
// checkpoint_save_seconds, checkpoint_bytes, layer_grad_norm.<layer>, diag.*) and stability events
// (a loss spike whose update is skipped, a rollback announced by its detection and a lifecycle
// event). The /metrics tests and the Prometheus end-to-end test feed the coordinator with it; a
// real training run can take its place, since those tests only need a coordinator address.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rpc/coordinator_client.h"

namespace keel::coord::testing {

struct FakeRunOptions {
  std::string job_id = "default";
  int world_size = 2;
  int layers = 2;
  int heads = 2;
  int eval_every = 5;         // steps with val_loss
  int diagnostics_every = 5;  // steps with diag.* values
  int checkpoint_every = 10;  // steps with checkpoint_save_seconds / checkpoint_bytes (shard writers)
};

// The values `rank` reports for `step` (rank 0's are the training-wide ones).
std::map<std::string, double> fake_step_values(const FakeRunOptions& options, int rank, int64_t step,
                                               bool skipped = false);

class FakeRun {
 public:
  // Registers every rank concurrently (the rendezvous needs them all) and starts heartbeats.
  FakeRun(const std::string& coordinator_address, FakeRunOptions options);
  ~FakeRun();  // ranks not shut down yet shut down with exit code 0
  FakeRun(const FakeRun&) = delete;
  FakeRun& operator=(const FakeRun&) = delete;

  // Healthy steps first..last from every rank.
  void steps(int64_t first, int64_t last);
  // A loss spike at `step` whose update the monitor skipped: skipped=1 and a loss_spike event with
  // action skip_update, from every rank (the coordinator counts rank 0's).
  void spike_skipped(int64_t step);
  // A sustained spike at `step` that rolled back to `checkpoint_step`: the detection event (action
  // rollback) and the lifecycle event "rollback" of the same step, from every rank.
  void rollback(int64_t step, int64_t checkpoint_step);
  void recovered(int64_t step);

  bool flush();  // every rank's queued reports processed by the coordinator
  void shutdown(int exit_code);

  const FakeRunOptions& options() const { return options_; }
  double last_loss() const { return last_loss_; }  // of rank 0's newest step

 private:
  void event_from_all_ranks(const std::string& kind, int64_t step, const std::string& evidence,
                            const std::string& action);

  FakeRunOptions options_;
  std::vector<std::unique_ptr<CoordinatorClient>> clients_;  // by rank
  bool shut_down_ = false;
  double last_loss_ = 0;
};

}  // namespace keel::coord::testing
