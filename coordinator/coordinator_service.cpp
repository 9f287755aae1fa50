// gRPC service and server of the coordinator (see coordinator_service.h). Handlers are thin: they
// authorize, translate messages to JobState calls and map refusals to status codes, so every rule
// lives (and is tested) in JobState.
#include "coordinator/coordinator_service.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "common/fs.h"
#include "rpc/grpc_runtime.h"

namespace keel::coord {
namespace v1 = keel::v1;
namespace {

v1::JobState to_proto(JobPhase phase) {
  switch (phase) {
    case JobPhase::kWaiting: return v1::WAITING;
    case JobPhase::kRunning: return v1::RUNNING;
    case JobPhase::kStopping: return v1::STOPPING;
    case JobPhase::kFailed: return v1::FAILED;
    case JobPhase::kCompleted: return v1::COMPLETED;
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

// Runs a handler body, turning refusals and unexpected errors into a status with the message.
template <typename F>
grpc::Status guarded(F&& body) {
  try {
    body();
    return grpc::Status::OK;
  } catch (const JobError& e) {
    return grpc::Status(to_grpc_code(e.code()), e.what());
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::INTERNAL, std::string("coordinator error: ") + e.what());
  }
}

// How long a blocking handler may wait: `timeout_seconds`, cut short by the caller's deadline.
SteadyClock::time_point server_deadline(const grpc::ServerContext* ctx, double timeout_seconds) {
  auto wait =
      std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(timeout_seconds));
  const auto client_deadline = ctx->deadline();
  const auto now = std::chrono::system_clock::now();
  if (client_deadline != std::chrono::system_clock::time_point::max() && client_deadline > now) {
    wait = std::min(wait, std::chrono::duration_cast<SteadyClock::duration>(client_deadline - now));
  }
  return SteadyClock::now() + wait;
}

}  // namespace

grpc::StatusCode to_grpc_code(JobErrorCode code) {
  switch (code) {
    case JobErrorCode::kInvalidArgument: return grpc::StatusCode::INVALID_ARGUMENT;
    case JobErrorCode::kNotFound: return grpc::StatusCode::NOT_FOUND;
    case JobErrorCode::kAlreadyExists: return grpc::StatusCode::ALREADY_EXISTS;
    case JobErrorCode::kFailedPrecondition: return grpc::StatusCode::FAILED_PRECONDITION;
    case JobErrorCode::kDeadlineExceeded: return grpc::StatusCode::DEADLINE_EXCEEDED;
    case JobErrorCode::kCancelled: return grpc::StatusCode::CANCELLED;
    case JobErrorCode::kUnavailable: return grpc::StatusCode::UNAVAILABLE;
  }
  return grpc::StatusCode::UNKNOWN;
}

CoordinatorService::CoordinatorService(JobState& job, std::string token, MetricsExporter* metrics)
    : job_(job), token_(std::move(token)), metrics_(metrics) {}

grpc::Status CoordinatorService::authorize(const grpc::ServerContextBase* ctx) const {
  if (token_.empty()) return grpc::Status::OK;
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return grpc::Status(
        grpc::StatusCode::UNAUTHENTICATED,
        "missing 'authorization: Bearer <token>' metadata (this coordinator requires a token)");
  }
  const std::string value(it->second.data(), it->second.size());
  const std::string expected = "Bearer " + token_;
  // Compare in time independent of where the strings differ, so the token cannot be probed byte by byte.
  unsigned diff = value.size() != expected.size();
  for (size_t i = 0; i < std::min(value.size(), expected.size()); ++i) diff |= value[i] ^ expected[i];
  if (diff != 0) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid coordinator token");
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Register(grpc::ServerContext* ctx, const v1::RegisterRequest* request,
                                          v1::RegisterReply* reply) {
  if (auto s = authorize(ctx); !s.ok()) return s;
  return guarded([&] {
    WorkerInfo w;
    w.host = request->host();
    w.local_rank = request->local_rank();
    w.device = request->device();
    w.pid = request->pid();
    w.requested_world_size = request->requested_world_size();
    w.requested_rank = request->requested_rank();
    for (const auto& [role, id] : request->nccl_id_proposals()) w.nccl_id_proposals[role] = id;
    const Assignment a = job_.register_worker(request->job_id(), w,
                                              server_deadline(ctx, job_.options().rendezvous_timeout_seconds),
                                              [ctx] { return ctx->IsCancelled(); });
    reply->set_rank(a.rank);
    reply->set_world_size(a.world_size);
    reply->set_dp_size(a.dp_size);
    reply->set_tp_size(a.tp_size);
    reply->set_dp_rank(a.dp_rank);
    reply->set_tp_rank(a.tp_rank);
    reply->set_generation(a.generation);
    for (const auto& g : a.groups) {
      auto* out = reply->add_groups();
      out->set_name(g.name);
      out->set_nccl_unique_id(g.nccl_unique_id);
      for (int r : g.ranks) out->add_ranks(r);
    }
  });
}

grpc::ServerUnaryReactor* CoordinatorService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                        const v1::HeartbeatRequest* request,
                                                        v1::HeartbeatReply* reply) {
  auto* reactor = ctx->DefaultReactor();
  grpc::Status status = authorize(ctx);
  if (status.ok()) status = beat(*request, reply);
  reactor->Finish(status);
  return reactor;
}

grpc::Status CoordinatorService::beat(const v1::HeartbeatRequest& request, v1::HeartbeatReply* reply) {
  return guarded([&] {
    const JobReport r = job_.heartbeat(request.job_id(), request.rank(), request.generation(), request.step());
    reply->set_job_state(to_proto(r.phase));
    reply->set_message(r.message);
  });
}

namespace {

// One worker's heartbeat stream: read a beat, answer it, read the next (strict ping-pong, so at
// most one read or one write is outstanding), on gRPC's callback threads. The token was checked
// once, when the stream opened; the first refused beat ends the stream with the refusal.
class HeartbeatStreamReactor final : public grpc::ServerBidiReactor<v1::HeartbeatRequest, v1::HeartbeatReply> {
 public:
  using BeatFn = std::function<grpc::Status(const v1::HeartbeatRequest&, v1::HeartbeatReply*)>;
  HeartbeatStreamReactor(BeatFn beat, const grpc::Status& auth) : beat_(std::move(beat)) {
    if (!auth.ok()) {
      Finish(auth);
      return;
    }
    StartRead(&request_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {  // the worker closed its side (or went away)
      Finish(grpc::Status::OK);
      return;
    }
    reply_.Clear();
    const grpc::Status status = beat_(request_, &reply_);
    if (!status.ok()) {
      Finish(status);
      return;
    }
    StartWrite(&reply_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "heartbeat reply could not be sent"));
      return;
    }
    StartRead(&request_);
  }
  void OnDone() override { delete this; }

 private:
  BeatFn beat_;
  v1::HeartbeatRequest request_;
  v1::HeartbeatReply reply_;
};

// One worker's metrics stream: reads batch after batch on gRPC's callback threads (no thread of its
// own), hands each accepted one to the job and the exporter, and ends the call with the first
// refusal (a stale generation, say) or OK when the worker closes the stream.
class MetricsStreamReader final : public grpc::ServerReadReactor<v1::MetricsBatch> {
 public:
  MetricsStreamReader(JobState& job, MetricsExporter* metrics, const grpc::Status& auth)
      : job_(job), metrics_(metrics) {
    if (!auth.ok()) {
      Finish(auth);
      return;
    }
    StartRead(&batch_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {  // the worker closed its side (or went away)
      Finish(grpc::Status::OK);
      return;
    }
    const grpc::Status status = guarded([&] {
      std::vector<StepRecord> steps;
      steps.reserve(batch_.steps_size());
      for (const auto& s : batch_.steps()) steps.push_back({s.step(), {s.values().begin(), s.values().end()}});
      std::vector<EventRecord> events;
      events.reserve(batch_.events_size());
      for (const auto& e : batch_.events()) {
        events.push_back({batch_.rank(), e.step(), e.kind(), e.json_evidence(), e.action()});
      }
      job_.record_metrics(batch_.job_id(), batch_.rank(), batch_.generation(), steps, events);
      if (metrics_) metrics_->record(batch_.rank(), steps, events);  // only batches the job accepted
    });
    if (!status.ok()) {
      Finish(status);
      return;
    }
    StartRead(&batch_);
  }
  void OnDone() override { delete this; }

 private:
  JobState& job_;
  MetricsExporter* metrics_;
  v1::MetricsBatch batch_;
};

}  // namespace

grpc::ServerBidiReactor<v1::HeartbeatRequest, v1::HeartbeatReply>* CoordinatorService::HeartbeatStream(
    grpc::CallbackServerContext* ctx) {
  return new HeartbeatStreamReactor([this](const auto& request, auto* reply) { return beat(request, reply); },
                                    authorize(ctx));
}

grpc::ServerReadReactor<v1::MetricsBatch>* CoordinatorService::ReportMetrics(grpc::CallbackServerContext* ctx,
                                                                             v1::Ack*) {
  return new MetricsStreamReader(job_, metrics_, authorize(ctx));
}

grpc::Status CoordinatorService::CommitCheckpoint(grpc::ServerContext* ctx, const v1::ShardWritten* request,
                                                  v1::CommitReply* reply) {
  if (auto s = authorize(ctx); !s.ok()) return s;
  return guarded([&] {
    ShardReport shard;
    shard.rank = request->rank();
    shard.generation = request->generation();
    shard.step = request->step();
    shard.shard_name = request->shard_name();
    shard.bytes = request->bytes();
    shard.crc32 = request->crc32();
    shard.every_dp_rank = request->every_dp_rank();
    // NaN or infinite from a client would make the deadline arithmetic undefined (found by
    // fuzz/fuzz_coordinator_rpc.cpp): such a request does not wait.
    const double asked = request->wait_seconds();
    const double wait = std::isfinite(asked) ? std::clamp(asked, 0.0, 3600.0) : 0.0;
    const auto deadline = server_deadline(ctx, wait);
    reply->set_committed(job_.commit_shard(request->job_id(), shard, deadline));
    reply->set_step(request->step());
  });
}

grpc::Status CoordinatorService::LatestCommitted(grpc::ServerContext* ctx, const v1::LatestRequest* request,
                                                 v1::LatestReply* reply) {
  if (auto s = authorize(ctx); !s.ok()) return s;
  return guarded([&] {
    job_.record_sealed();  // the answer names every step sealed on disk by now
    reply->set_step(job_.latest_committed(request->job_id()));
  });
}

grpc::Status CoordinatorService::JobStatus(grpc::ServerContext* ctx, const v1::JobStatusRequest* request,
                                           v1::JobStatusReply* reply) {
  if (auto s = authorize(ctx); !s.ok()) return s;
  return guarded([&] {
    job_.record_sealed();
    const JobSnapshot snap = job_.snapshot(request->job_id());
    reply->set_state(to_proto(snap.phase));
    reply->set_world_size(snap.world_size);
    reply->set_registered(snap.registered);
    reply->set_latest_committed_step(snap.latest_committed_step);
    reply->set_generation(snap.generation);
    reply->set_message(snap.message);
    reply->set_job_id(snap.job_id);
    reply->set_dp_size(snap.dp_size);
    reply->set_tp_size(snap.tp_size);
    for (const auto& r : snap.ranks) {
      auto* out = reply->add_ranks();
      out->set_rank(r.rank);
      out->set_host(r.host);
      out->set_last_heartbeat_age_seconds(r.last_heartbeat_age_seconds);
      out->set_last_step(r.last_step);
      out->set_alive(r.alive);
      out->set_local_rank(r.local_rank);
      out->set_pid(r.pid);
      out->set_device(r.device);
      out->set_shut_down(r.shut_down);
      out->set_exit_code(r.exit_code);
      out->set_metrics_steps_received(r.metrics_steps_received);
      out->set_events_received(r.events_received);
      out->mutable_last_values()->insert(r.last_values.begin(), r.last_values.end());
    }
  });
}

grpc::Status CoordinatorService::Shutdown(grpc::ServerContext* ctx, const v1::ShutdownRequest* request,
                                          v1::Ack*) {
  if (auto s = authorize(ctx); !s.ok()) return s;
  return guarded([&] {
    job_.shutdown_rank(request->job_id(), request->rank(), request->generation(), request->reason(),
                       request->exit_code());
  });
}

bool is_loopback_listen_address(const std::string& host_port) {
  std::string host;
  if (!host_port.empty() && host_port.front() == '[') {  // [v6]:port
    const auto close = host_port.find(']');
    if (close == std::string::npos) return false;
    host = host_port.substr(1, close - 1);
  } else {
    if (std::count(host_port.begin(), host_port.end(), ':') > 1) return false;  // unbracketed IPv6: ambiguous
    host = host_port.substr(0, host_port.rfind(':'));
  }
  if (host.empty()) return false;  // ":5000" listens everywhere
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || !found) return false;
  bool all_loopback = true;
  for (const addrinfo* a = found; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      all_loopback &= (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (a->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
      all_loopback &= IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) != 0;
    } else {
      all_loopback = false;
    }
  }
  ::freeaddrinfo(found);
  return all_loopback;
}

// ---- CoordinatorServer ----

CoordinatorServer::CoordinatorServer(ServerOptions options)
    : options_(std::move(options)),
      job_(std::make_unique<JobState>(options_.job)),
      metrics_(std::make_unique<MetricsExporter>(options_.metrics, [job = job_.get()] { return job->snapshot(); })) {
  service_ = std::make_unique<CoordinatorService>(*job_, options_.token, metrics_.get());
}

CoordinatorServer::~CoordinatorServer() {
  stop();
}

void CoordinatorServer::start() {
  KEEL_CHECK(!server_, "coordinator server already started");
  configure_grpc_runtime();
  KEEL_CHECK(!options_.token.empty() || is_loopback_listen_address(options_.listen_address),
             "the coordinator refuses to listen on " << options_.listen_address
                 << " without a shared token: beyond loopback every RPC must be authenticated "
                    "(give --token-file or set KEEL_COORDINATOR_TOKEN, and serve TLS with --tls-cert/--tls-key)");
  KEEL_CHECK(options_.tls_cert_file.empty() == options_.tls_key_file.empty(),
             "TLS needs both a certificate and its private key");
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options_.tls_cert_file.empty()) {
    for (const auto* path : {&options_.tls_cert_file, &options_.tls_key_file, &options_.tls_client_ca_file})
      KEEL_CHECK(path->empty() || fs::exists(*path), "TLS file '" << *path << "' does not exist");
    grpc::SslServerCredentialsOptions ssl(options_.tls_client_ca_file.empty()
                                              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_key_cert_pairs.push_back({fs::read_file(options_.tls_key_file), fs::read_file(options_.tls_cert_file)});
    if (!options_.tls_client_ca_file.empty()) ssl.pem_root_certs = fs::read_file(options_.tls_client_ca_file);
    credentials = grpc::SslServerCredentials(ssl);
  }
  metrics_->start();  // first: a metrics address that cannot be bound fails before workers can connect
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen_address, credentials, &port_);
  builder.SetMaxReceiveMessageSize(options_.max_receive_message_bytes);
  tune_server_builder(builder);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  KEEL_CHECK(server_ && port_ > 0,
             "coordinator cannot listen on " << options_.listen_address << " (bad address or port in use)");
  checker_ = std::thread([this] { check_loop(); });
}

void CoordinatorServer::check_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, options_.heartbeat_check_interval, [&] { return stopping_; })) {
    lock.unlock();
    job_->check_heartbeats();
    job_->record_sealed();  // checkpoints rank 0 sealed since the last look
    lock.lock();
  }
}

void CoordinatorServer::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (checker_.joinable()) checker_.join();
  job_->record_sealed();
  job_->close();  // blocked Register / CommitCheckpoint calls return UNAVAILABLE now
  if (server_) {
    // Calls still running after the grace period are cancelled. An idle connection of a client
    // process that does not poll its channel can hold this for the whole second; workers exit
    // right after Shutdown, so in practice it returns at once.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_->Wait();
  }
}

std::string CoordinatorServer::address() const {
  const std::string& a = options_.listen_address;
  const auto colon = a.rfind(':');
  return (colon == std::string::npos ? a : a.substr(0, colon)) + ":" + std::to_string(port_);
}

}  // namespace keel::coord
