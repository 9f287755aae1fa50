// The stand-in training job of the /metrics tests (see metrics_test_driver.h).
#include "tests/metrics/metrics_test_driver.h"

#include <chrono>
#include <cmath>
#include <future>

#include "common/check.h"

namespace keel::coord::testing {

std::map<std::string, double> fake_step_values(const FakeRunOptions& o, int rank, int64_t step, bool skipped) {
  const double t = static_cast<double>(step);
  std::map<std::string, double> v;
  v["loss"] = 2.0 + 4.0 * std::exp(-t / 40.0) + (skipped ? 3.0 : 0.0);
  v["grad_norm"] = 0.8 + 0.2 * std::exp(-t / 20.0) + (skipped ? 9.0 : 0.0);
  v["lr"] = 3e-4 * std::min(1.0, t / 10.0);
  v["tokens_per_second"] = 12000.0 + 10.0 * rank;
  v["mfu"] = 0.31;
  v["step_time_seconds"] = 0.05 + 0.001 * rank;
  v["skipped"] = skipped ? 1 : 0;
  v["update_ratio"] = skipped ? 0 : 1e-3;
  v["tokens_seen"] = 8192.0 * t;
  v["gpu_memory_bytes"] = 3.5e9 + 1e6 * rank;
  v["optimizer_state_bytes"] = 5.0e8;
  v["layer_grad_norm.embedding"] = 0.1;
  for (int layer = 0; layer < o.layers; ++layer) {
    v["layer_grad_norm.block." + std::to_string(layer)] = 0.2 + 0.01 * layer;
  }
  v["layer_grad_norm.head"] = 0.3;
  if (o.eval_every > 0 && step % o.eval_every == 0) v["val_loss"] = v["loss"] + 0.05;
  if (rank == 0 && o.checkpoint_every > 0 && step % o.checkpoint_every == 0) {
    v["checkpoint_save_seconds"] = 0.4;
    v["checkpoint_bytes"] = 48.0e6;
  }
  if (o.diagnostics_every > 0 && step % o.diagnostics_every == 0) {
    v["diag.embedding_output_std"] = 0.9;
    v["diag.attention_entropy_overload_fraction"] = 0.25;
    for (int layer = 0; layer < o.layers; ++layer) {
      const std::string l = "diag.layer" + std::to_string(layer);
      for (int head = 0; head < o.heads; ++head) {
        const std::string h = l + ".head" + std::to_string(head);
        v[h + ".attention_entropy"] = 2.0 + 0.1 * head;
        v[h + ".attention_normalised_entropy"] = 0.5 + 0.05 * head + 0.01 * layer;
      }
      v[l + ".linearity"] = 0.8 - 0.05 * layer;
      v[l + ".linearity_without_residual"] = 0.4;
      v[l + ".mlp_sparsity"] = 0.6;
      v[l + ".mlp_exactly_zero"] = 0.0;
      v[l + ".attention_output_rms"] = 0.7;
      v[l + ".mlp_output_rms"] = 0.9;
    }
  }
  return v;
}

FakeRun::FakeRun(const std::string& coordinator_address, FakeRunOptions options) : options_(std::move(options)) {
  ClientOptions client_options;
  client_options.job_id = options_.job_id;
  for (int rank = 0; rank < options_.world_size; ++rank) {
    clients_.push_back(std::make_unique<CoordinatorClient>(coordinator_address, "", client_options));
  }
  std::vector<std::future<Registration>> registrations;
  for (int rank = 0; rank < options_.world_size; ++rank) {
    registrations.push_back(std::async(std::launch::async, [this, rank] {
      RegisterOptions r;
      r.host = "fake-host";
      r.local_rank = rank;
      r.requested_rank = rank;
      r.requested_world_size = options_.world_size;
      r.timeout_seconds = 60;
      return clients_[rank]->register_worker(r);
    }));
  }
  for (int rank = 0; rank < options_.world_size; ++rank) {
    const Registration r = registrations[rank].get();
    KEEL_CHECK(r.rank == rank, "fake rank " << rank << " was assigned rank " << r.rank);
  }
  for (auto& client : clients_) client->start_heartbeats(std::chrono::milliseconds(200));
}

FakeRun::~FakeRun() {
  if (!shut_down_) {
    try {
      shutdown(0);
    } catch (const std::exception&) {
      // The coordinator may already be gone when a test failed early; nothing left to tell it.
    }
  }
}

void FakeRun::steps(int64_t first, int64_t last) {
  for (int64_t step = first; step <= last; ++step) {
    for (int rank = 0; rank < options_.world_size; ++rank) {
      auto values = fake_step_values(options_, rank, step);
      if (rank == 0) last_loss_ = values.at("loss");
      clients_[rank]->report_metrics_async(step, std::move(values));
    }
  }
}

void FakeRun::event_from_all_ranks(const std::string& kind, int64_t step, const std::string& evidence,
                                   const std::string& action) {
  for (auto& client : clients_) client->report_event_async(kind, step, evidence, action);
}

void FakeRun::spike_skipped(int64_t step) {
  for (int rank = 0; rank < options_.world_size; ++rank) {
    auto values = fake_step_values(options_, rank, step, true);
    if (rank == 0) last_loss_ = values.at("loss");
    clients_[rank]->report_metrics_async(step, std::move(values));
  }
  event_from_all_ranks("loss_spike", step, R"({"loss_window":[2.1,2.1,5.1],"z":9.5})", "skip_update");
}

void FakeRun::rollback(int64_t step, int64_t checkpoint_step) {
  const std::string evidence =
      R"({"loss_window":[5.1,5.3,5.2],"checkpoint_step":)" + std::to_string(checkpoint_step) + "}";
  event_from_all_ranks("sustained_spike", step, evidence, "rollback");
  event_from_all_ranks("rollback", step, evidence, "rollback");
}

void FakeRun::recovered(int64_t step) {
  event_from_all_ranks("recovered", step, "{}", "apply");
}

bool FakeRun::flush() {
  bool all = true;
  for (auto& client : clients_) all = client->flush_metrics(std::chrono::milliseconds(10000)) && all;
  return all;
}

void FakeRun::shutdown(int exit_code) {
  shut_down_ = true;
  for (auto& client : clients_) client->shutdown(exit_code == 0 ? "finished" : "failed", exit_code);
  clients_.clear();  // a worker exits after shutdown; idle connections would delay the server's stop
}

}  // namespace keel::coord::testing
