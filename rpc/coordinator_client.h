// The worker's side of the coordinator protocol, with plain C++ types only: worker code that
// includes Torch must never see generated protobuf headers (the PyTorch wheel ships conflicting
// ones), so this header hides gRPC and protobuf behind a pimpl. It registers for the rendezvous,
// sends heartbeats from a background thread (and remembers when the job failed), streams metrics
// and events from a bounded queue on another background thread so the training step never waits,
// and reports checkpoint shards for the two-phase commit.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "rpc/token.h"

namespace keel::coord {

// A refused or failed RPC. grpc_code() is the numeric grpc::StatusCode (e.g. 3 INVALID_ARGUMENT,
// 5 NOT_FOUND, 6 ALREADY_EXISTS, 9 FAILED_PRECONDITION, 14 UNAVAILABLE, 16 UNAUTHENTICATED).
class CoordinatorError : public KeelError {
 public:
  CoordinatorError(int grpc_code, const std::string& message) : KeelError(message), code_(grpc_code) {}
  int grpc_code() const { return code_; }

 private:
  int code_;
};

struct ClientOptions {
  std::string job_id = "default";
  double rpc_timeout_seconds = 10;        // per unary call (Register has its own)
  size_t metrics_queue_capacity = 10000;  // items; when full the oldest are dropped
  size_t max_items_per_batch = 256;       // per streamed MetricsBatch
  // Heartbeats failing this long (coordinator gone) count as a failed job: leave the collectives.
  double coordinator_loss_timeout_seconds = 30;
  // TLS: a PEM file with the CA certificate that signed the coordinator's certificate. Empty: a
  // plaintext channel (loopback only; a coordinator beyond loopback should serve TLS).
  std::string tls_ca_file;
  std::string tls_server_name;  // name to check the certificate against; empty: the address's host
};

struct RegisterOptions {
  std::string host;  // empty: this machine's host name
  int local_rank = 0;
  std::string device = "cpu";
  int64_t pid = 0;               // 0: this process
  int requested_world_size = 0;  // 0: whatever the coordinator has
  int requested_rank = -1;       // -1: any (assigned in (host, local_rank) order)
  // NCCL ids this worker created for groups it may lead: role "world"/"dp"/"tp" -> 128 bytes.
  std::map<std::string, std::string> nccl_id_proposals;
  double timeout_seconds = 600;  // how long to wait for the other workers
};

struct GroupInfo {
  std::string name;            // "world", "dp_<i>", "tp_<i>"
  std::string nccl_unique_id;  // 128 raw bytes
  std::vector<int> ranks;
};

struct Registration {
  int rank = -1, world_size = 0, dp_size = 0, tp_size = 0, dp_rank = 0, tp_rank = 0;
  int64_t generation = 0;
  std::vector<GroupInfo> groups;                          // world, dp_<tp_rank>, tp_<dp_rank>
  const GroupInfo& group(const std::string& name) const;  // throws KeelError if absent
};

struct RankStatusInfo {
  int rank = 0;
  std::string host;
  double last_heartbeat_age_seconds = 0;
  int64_t last_step = -1;
  bool alive = true, shut_down = false;
  int exit_code = 0;
  uint64_t metrics_steps_received = 0, events_received = 0;
  std::map<std::string, double> last_values;
};

struct JobStatusInfo {
  std::string state;  // WAITING, RUNNING, STOPPING, FAILED, COMPLETED
  std::string message;
  int world_size = 0, registered = 0;
  int64_t generation = 0, latest_committed_step = -1;
  std::vector<RankStatusInfo> ranks;
};

class CoordinatorClient {
 public:
  // `address` like "127.0.0.1:40123"; `token` empty: no authorization metadata. Connects lazily.
  CoordinatorClient(const std::string& address, const std::string& token = "", ClientOptions options = {});
  ~CoordinatorClient();  // stops the background threads (unsent metrics are dropped)
  CoordinatorClient(const CoordinatorClient&) = delete;
  CoordinatorClient& operator=(const CoordinatorClient&) = delete;

  // Blocks until every worker registered. Throws CoordinatorError. Starts the metrics sender.
  Registration register_worker(const RegisterOptions& options);

  // Heartbeats every `interval` from a background thread until stop_heartbeats() or shutdown().
  void start_heartbeats(std::chrono::milliseconds interval = std::chrono::milliseconds(1000));
  void stop_heartbeats();
  void set_step(int64_t step);  // reported with the next heartbeat (metrics also update it)

  // Sticky: true once a heartbeat said FAILED, the coordinator refused us (stale generation), or
  // it was unreachable for coordinator_loss_timeout_seconds.
  bool job_failed() const;
  std::string failure_message() const;
  std::string job_state() const;  // the last state a heartbeat reported ("UNKNOWN" before one)

  // Never block: enqueue for the background stream; the oldest item is dropped if the queue is full.
  void report_metrics_async(int64_t step, std::map<std::string, double> values);
  void report_event_async(const std::string& kind, int64_t step, const std::string& json_evidence,
                          const std::string& action);
  // Sends what is queued and closes the stream so the coordinator has processed it. False on timeout.
  bool flush_metrics(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  uint64_t metrics_dropped() const;  // dropped because the queue was full or a send failed

  // Reports a durably written shard; true once all writers of `step` reported it. With
  // wait_seconds > 0 the coordinator waits that long for the other writers before answering.
  // every_dp_rank: every rank of the job writes a shard of this step (a sharded optimizer's
  // per-DP-rank files), not only the DP-rank-0 member of each TP group.
  bool commit_shard(int64_t step, const std::string& shard_name, uint64_t bytes, uint32_t crc32,
                    double wait_seconds = 0, bool every_dp_rank = false);
  int64_t latest_committed();  // -1 if none
  JobStatusInfo job_status();

  // Orderly exit: flushes metrics, stops heartbeats, reports the exit code (non-zero fails the job).
  void shutdown(const std::string& reason, int exit_code);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::coord
