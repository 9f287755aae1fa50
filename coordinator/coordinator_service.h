// The coordinator's gRPC face: CoordinatorService implements keel.v1.Coordinator (sync API) on top
// of JobState, translating messages and mapping JobError onto gRPC status codes, and hands every
// accepted metrics batch to the /metrics exporter; CoordinatorServer owns the listening server, the
// exporter (metrics_exporter.h) and the thread that checks heartbeats. Torch-free: this header pulls in
// generated protobuf code, so only the coordinator process and tests include it (workers use
// coordinator_client.h, which has plain C++ types only).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "coordinator/job_state.h"
#include "coordinator/metrics_exporter.h"
#include "keel/v1/coordinator.grpc.pb.h"

namespace keel::coord {

// Maps a JobError code onto the gRPC status code clients see.
grpc::StatusCode to_grpc_code(JobErrorCode code);

class CoordinatorService final : public keel::v1::Coordinator::Service {
 public:
  // `token` empty: no authentication; otherwise every call needs "authorization: Bearer <token>".
  // `metrics` (may be null) receives every accepted metrics batch for /metrics.
  CoordinatorService(JobState& job, std::string token, MetricsExporter* metrics = nullptr);

  grpc::Status Register(grpc::ServerContext* ctx, const keel::v1::RegisterRequest* request,
                        keel::v1::RegisterReply* reply) override;
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const keel::v1::HeartbeatRequest* request,
                         keel::v1::HeartbeatReply* reply) override;
  grpc::Status ReportMetrics(grpc::ServerContext* ctx, grpc::ServerReader<keel::v1::MetricsBatch>* reader,
                             keel::v1::Ack* reply) override;
  grpc::Status CommitCheckpoint(grpc::ServerContext* ctx, const keel::v1::ShardWritten* request,
                                keel::v1::CommitReply* reply) override;
  grpc::Status LatestCommitted(grpc::ServerContext* ctx, const keel::v1::LatestRequest* request,
                               keel::v1::LatestReply* reply) override;
  grpc::Status JobStatus(grpc::ServerContext* ctx, const keel::v1::JobStatusRequest* request,
                         keel::v1::JobStatusReply* reply) override;
  grpc::Status Shutdown(grpc::ServerContext* ctx, const keel::v1::ShutdownRequest* request,
                        keel::v1::Ack* reply) override;

 private:
  grpc::Status authorize(const grpc::ServerContext* ctx) const;

  JobState& job_;
  std::string token_;
  MetricsExporter* metrics_;
};

struct ServerOptions {
  std::string listen_address = "127.0.0.1:0";  // port 0: pick a free port (see port())
  std::string token;                           // empty: no authentication
  JobOptions job;
  MetricsOptions metrics;  // port -1 (the default here): no /metrics
  int max_receive_message_bytes = 4 << 20;  // larger requests get RESOURCE_EXHAUSTED
  std::chrono::milliseconds heartbeat_check_interval{500};
};

class CoordinatorServer {
 public:
  explicit CoordinatorServer(ServerOptions options);  // builds the JobState; does not listen yet
  ~CoordinatorServer();                               // stop()
  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  void start();  // throws KeelError if the address (or the metrics address) cannot be bound
  void stop();   // idempotent: wakes blocked RPCs, stops the checker, shuts the server down

  int port() const { return port_; }
  std::string address() const;  // the listen address with the bound port, e.g. 127.0.0.1:40123
  JobState& job() { return *job_; }
  MetricsExporter& metrics() { return *metrics_; }

 private:
  void check_loop();

  ServerOptions options_;
  std::unique_ptr<JobState> job_;
  std::unique_ptr<MetricsExporter> metrics_;  // after job_: its scrapes read the job until it goes
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::thread checker_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

}  // namespace keel::coord
