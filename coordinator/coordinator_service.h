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
#include "metrics/prometheus_exporter.h"
#include "keel/v1/coordinator.grpc.pb.h"

namespace keel::coord {

// Maps a JobError code onto the gRPC status code clients see.
grpc::StatusCode to_grpc_code(JobErrorCode code);

// ReportMetrics and the heartbeats use gRPC's callback API: each worker keeps its metrics and
// heartbeat streams open for the whole run, and a synchronous handler would hold one server thread
// per open stream (4096 threads for 4096 workers, which starved the heartbeats:
// docs/reliability.md); heartbeats, the most frequent call, are answered inline on gRPC's threads
// without a hand-off. The other methods
// are rare unary calls on the synchronous pool (Register waits, but only during the rendezvous).
class CoordinatorService final
    : public keel::v1::Coordinator::WithCallbackMethod_Heartbeat<keel::v1::Coordinator::WithCallbackMethod_HeartbeatStream<
          keel::v1::Coordinator::WithCallbackMethod_ReportMetrics<keel::v1::Coordinator::Service>>> {
 public:
  // `token` empty: no authentication; otherwise every call needs "authorization: Bearer <token>".
  // `metrics` (may be null) receives every accepted metrics batch for /metrics.
  CoordinatorService(JobState& job, std::string token, MetricsExporter* metrics = nullptr);

  grpc::Status Register(grpc::ServerContext* ctx, const keel::v1::RegisterRequest* request,
                        keel::v1::RegisterReply* reply) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx, const keel::v1::HeartbeatRequest* request,
                                      keel::v1::HeartbeatReply* reply) override;
  grpc::ServerBidiReactor<keel::v1::HeartbeatRequest, keel::v1::HeartbeatReply>* HeartbeatStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerReadReactor<keel::v1::MetricsBatch>* ReportMetrics(grpc::CallbackServerContext* ctx,
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
  grpc::Status authorize(const grpc::ServerContextBase* ctx) const;
  // One beat, shared by Heartbeat and HeartbeatStream: the job's answer, or its refusal.
  grpc::Status beat(const keel::v1::HeartbeatRequest& request, keel::v1::HeartbeatReply* reply);

  JobState& job_;
  std::string token_;
  MetricsExporter* metrics_;
};

// True when `host_port`'s host ("127.0.0.1:0", "[::1]:5000", "localhost:0") names only loopback
// addresses; false for wildcard ("0.0.0.0", "[::]"), other addresses and names that do not resolve.
bool is_loopback_listen_address(const std::string& host_port);

struct ServerOptions {
  std::string listen_address = "127.0.0.1:0";  // port 0: pick a free port (see port())
  // Empty: no authentication, allowed only on a loopback listen address (start() refuses to serve
  // beyond loopback without a token); otherwise every call needs "authorization: Bearer <token>".
  std::string token;
  // TLS (PEM files): set both to serve over TLS; tls_client_ca_file also requires client
  // certificates signed by that CA (mutual TLS). Empty: plaintext.
  std::string tls_cert_file, tls_key_file, tls_client_ca_file;
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

  // Throws KeelError if the address (or the metrics address) cannot be bound, the address is beyond
  // loopback and there is no token, or the TLS files cannot be read.
  void start();
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
