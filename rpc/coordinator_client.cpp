// Worker-side coordinator client (see coordinator_client.h): registration, unary RPCs and the
// heartbeat thread; the metrics queue and its sender are in metrics_queue.cpp. Both
// background threads keep the default stack size: the CUDA libraries' static TLS does not fit in
// small stacks (docs/gpu.md).
#include <unistd.h>

#include "rpc/heartbeat_stream.h"
#include "rpc/coordinator_client_impl.h"
#include "rpc/grpc_runtime.h"

#include "common/fs.h"


namespace keel::coord {
using Clock = std::chrono::steady_clock;

const GroupInfo& Registration::group(const std::string& name) const {
  for (const auto& g : groups) {
    if (g.name == name) return g;
  }
  KEEL_CHECK(false, "rank " << rank << " has no group '" << name << "'");
}

CoordinatorClient::CoordinatorClient(const std::string& address, const std::string& token,
                                     ClientOptions options)
    : impl_(std::make_unique<Impl>()) {
  configure_grpc_runtime();
  impl_->address = address;
  impl_->token = token;
  impl_->opts = std::move(options);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(4 << 20);
  args.SetMaxSendMessageSize(4 << 20);  // the coordinator refuses larger requests anyway
  tune_channel_arguments(args);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!impl_->opts.tls_ca_file.empty()) {
    KEEL_CHECK(fs::exists(impl_->opts.tls_ca_file), "TLS CA file '" << impl_->opts.tls_ca_file << "' does not exist");
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = fs::read_file(impl_->opts.tls_ca_file);
    credentials = grpc::SslCredentials(ssl);
    if (!impl_->opts.tls_server_name.empty())
      args.SetSslTargetNameOverride(impl_->opts.tls_server_name);
  }
  impl_->channel = grpc::CreateCustomChannel(address, credentials, args);
  impl_->stub = v1::Coordinator::NewStub(impl_->channel);
}

CoordinatorClient::~CoordinatorClient() {
  stop_heartbeats();
  {
    std::lock_guard<std::mutex> lock(impl_->q_mu);
    impl_->q_stop = true;
  }
  impl_->q_cv.notify_all();
  {
    std::lock_guard<std::mutex> lock(impl_->stream_mu);
    if (impl_->stream_ctx) impl_->stream_ctx->TryCancel();  // unblocks a Write stuck on flow control
  }
  if (impl_->sender.joinable()) impl_->sender.join();
}

Registration CoordinatorClient::register_worker(const RegisterOptions& o) {
  v1::RegisterRequest req;
  req.set_job_id(impl_->opts.job_id);
  std::string host = o.host;
  if (host.empty()) {
    char buf[256] = {0};
    gethostname(buf, sizeof(buf) - 1);
    host = buf;
  }
  req.set_host(host);
  req.set_local_rank(o.local_rank);
  req.set_device(o.device);
  req.set_pid(o.pid != 0 ? o.pid : static_cast<int64_t>(getpid()));
  req.set_requested_world_size(o.requested_world_size);
  req.set_requested_rank(o.requested_rank);
  for (const auto& [role, id] : o.nccl_id_proposals) (*req.mutable_nccl_id_proposals())[role] = id;
  v1::RegisterReply reply;
  grpc::ClientContext ctx;
  impl_->context(ctx, o.timeout_seconds);
  ctx.set_wait_for_ready(true);  // the coordinator may still be starting: wait rather than fail
  const grpc::Status s = impl_->stub->Register(&ctx, req, &reply);
  if (!s.ok()) impl_->fail_rpc("registration", s);

  Registration r;
  r.rank = reply.rank();
  r.world_size = reply.world_size();
  r.dp_size = reply.dp_size();
  r.tp_size = reply.tp_size();
  r.dp_rank = reply.dp_rank();
  r.tp_rank = reply.tp_rank();
  r.generation = reply.generation();
  for (const auto& g : reply.groups())
    r.groups.push_back({g.name(), g.nccl_unique_id(), {g.ranks().begin(), g.ranks().end()}});
  impl_->generation = r.generation;
  impl_->rank = r.rank;
  {
    std::lock_guard<std::mutex> lock(impl_->state_mu);
    impl_->state = "RUNNING";
  }
  if (!impl_->sender.joinable()) impl_->sender = std::thread([this] { impl_->sender_loop(); });
  return r;
}

void CoordinatorClient::start_heartbeats(std::chrono::milliseconds interval) {
  impl_->require_registered("heartbeats");
  stop_heartbeats();
  {
    std::lock_guard<std::mutex> lock(impl_->hb_mu);
    impl_->hb_stop = false;
  }
  impl_->hb_thread = std::thread([this, interval] { impl_->heartbeat_loop(interval); });
}

void CoordinatorClient::stop_heartbeats() {
  {
    std::lock_guard<std::mutex> lock(impl_->hb_mu);
    impl_->hb_stop = true;
  }
  impl_->hb_cv.notify_all();
  if (impl_->hb_thread.joinable()) impl_->hb_thread.join();
}

void CoordinatorClient::Impl::heartbeat_loop(std::chrono::milliseconds interval) {
  auto last_ok = Clock::now();
  // A beat may take up to two intervals (at least 1 s) before it counts as lost.
  const double rpc_timeout = std::max(1.0, 2.0 * std::chrono::duration<double>(interval).count());
  // Beats go over one long-lived HeartbeatStream (cheap for the coordinator: docs/reliability.md);
  // after a failure the stream is dropped and the next beat opens a new one.
  std::unique_ptr<HeartbeatStreamCall> call;
  std::unique_lock<std::mutex> lock(hb_mu);
  while (!hb_stop && !failed) {
    lock.unlock();
    v1::HeartbeatRequest req;
    req.set_job_id(opts.job_id);
    req.set_rank(rank);
    req.set_generation(generation);
    req.set_step(step);
    v1::HeartbeatReply reply;
    if (!call) call = std::make_unique<HeartbeatStreamCall>(*stub, token);
    const grpc::Status s = call->beat(req, reply, rpc_timeout);
    if (!s.ok()) call.reset();
    if (s.ok()) {
      last_ok = Clock::now();
      {
        std::lock_guard<std::mutex> g(state_mu);
        state = v1::JobState_Name(reply.job_state());
      }
      if (reply.job_state() == v1::FAILED) mark_failed(reply.message());
    } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
               s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
               s.error_code() == grpc::StatusCode::CANCELLED) {
      const double silent = std::chrono::duration<double>(Clock::now() - last_ok).count();
      if (silent > opts.coordinator_loss_timeout_seconds) {
        mark_failed("lost contact with the coordinator at " + address + " for " +
                    std::to_string(static_cast<int>(silent)) + " s: " + s.error_message());
      }
    } else {  // refused: stale generation, unknown job, bad token... this worker cannot go on
      mark_failed("coordinator refused heartbeat: " + s.error_message());
    }
    if (failed) {
      std::lock_guard<std::mutex> g(state_mu);
      state = "FAILED";
    }
    lock.lock();
    hb_cv.wait_for(lock, interval, [&] { return hb_stop; });
  }
  lock.unlock();
  call.reset();  // half-close: the coordinator ends the stream
}

void CoordinatorClient::set_step(int64_t step) {
  impl_->step = step;
}
bool CoordinatorClient::job_failed() const {
  return impl_->failed;
}

std::string CoordinatorClient::failure_message() const {
  std::lock_guard<std::mutex> lock(impl_->state_mu);
  return impl_->failure;
}

std::string CoordinatorClient::job_state() const {
  std::lock_guard<std::mutex> lock(impl_->state_mu);
  return impl_->state;
}

bool CoordinatorClient::commit_shard(int64_t step, const std::string& shard_name, uint64_t bytes,
                                     uint32_t crc32, double wait_seconds, bool every_dp_rank) {
  impl_->require_registered("commit_shard");
  v1::ShardWritten req;
  req.set_job_id(impl_->opts.job_id);
  req.set_rank(impl_->rank);
  req.set_generation(impl_->generation);
  req.set_step(step);
  req.set_shard_name(shard_name);
  req.set_bytes(bytes);
  req.set_crc32(crc32);
  req.set_wait_seconds(wait_seconds);
  req.set_every_dp_rank(every_dp_rank);
  v1::CommitReply reply;
  grpc::ClientContext ctx;
  impl_->context(ctx, impl_->opts.rpc_timeout_seconds + wait_seconds);
  const grpc::Status s = impl_->stub->CommitCheckpoint(&ctx, req, &reply);
  if (!s.ok()) impl_->fail_rpc("checkpoint commit", s);
  return reply.committed();
}

int64_t CoordinatorClient::latest_committed() {
  v1::LatestRequest req;
  req.set_job_id(impl_->opts.job_id);
  v1::LatestReply reply;
  grpc::ClientContext ctx;
  impl_->context(ctx, impl_->opts.rpc_timeout_seconds);
  const grpc::Status s = impl_->stub->LatestCommitted(&ctx, req, &reply);
  if (!s.ok()) impl_->fail_rpc("latest-committed query", s);
  return reply.step();
}

JobStatusInfo CoordinatorClient::job_status() {
  v1::JobStatusRequest req;
  req.set_job_id(impl_->opts.job_id);
  v1::JobStatusReply reply;
  grpc::ClientContext ctx;
  impl_->context(ctx, impl_->opts.rpc_timeout_seconds);
  const grpc::Status s = impl_->stub->JobStatus(&ctx, req, &reply);
  if (!s.ok()) impl_->fail_rpc("status query", s);
  JobStatusInfo out;
  out.state = v1::JobState_Name(reply.state());
  out.message = reply.message();
  out.world_size = reply.world_size();
  out.registered = reply.registered();
  out.generation = reply.generation();
  out.latest_committed_step = reply.latest_committed_step();
  for (const auto& r : reply.ranks()) {
    out.ranks.push_back({r.rank(),
                         r.host(),
                         r.last_heartbeat_age_seconds(),
                         r.last_step(),
                         r.alive(),
                         r.shut_down(),
                         r.exit_code(),
                         r.metrics_steps_received(),
                         r.events_received(),
                         {r.last_values().begin(), r.last_values().end()}});
  }
  return out;
}

void CoordinatorClient::shutdown(const std::string& reason, int exit_code) {
  impl_->require_registered("shutdown");
  flush_metrics();
  stop_heartbeats();
  v1::ShutdownRequest req;
  req.set_job_id(impl_->opts.job_id);
  req.set_rank(impl_->rank);
  req.set_generation(impl_->generation);
  req.set_reason(reason);
  req.set_exit_code(exit_code);
  v1::Ack ack;
  grpc::ClientContext ctx;
  impl_->context(ctx, impl_->opts.rpc_timeout_seconds);
  const grpc::Status s = impl_->stub->Shutdown(&ctx, req, &ack);
  if (!s.ok()) impl_->fail_rpc("shutdown", s);
}

}  // namespace keel::coord
