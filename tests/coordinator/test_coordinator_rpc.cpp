// The coordinator over real gRPC on loopback: a concurrent 4-worker rendezvous (dp=2 x tp=2),
// failure detection through heartbeats, the status codes of bad requests, authentication, async
// metrics delivery, checkpoint commits and orderly completion.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "rpc/coordinator_client.h"
#include "coordinator/coordinator_service.h"
#include "tests/coordinator/test_util.h"

namespace keel::coord {
namespace {

using testing::run_concurrently;
using Ms = std::chrono::milliseconds;

ServerOptions server_options(int world, int dp, int tp, const std::string& token = "") {
  ServerOptions o;
  o.job.job_id = "job";
  o.job.world_size = world;
  o.job.dp_size = dp;
  o.job.tp_size = tp;
  o.job.heartbeat_timeout_seconds = 1.0;
  o.job.rendezvous_timeout_seconds = 20;
  o.heartbeat_check_interval = Ms(100);
  o.token = token;
  return o;
}

ClientOptions client_options() {
  ClientOptions o;
  o.job_id = "job";
  return o;
}

RegisterOptions reg(int local_rank, int requested_rank = -1) {
  RegisterOptions r;
  r.host = "host";
  r.local_rank = local_rank;
  r.requested_rank = requested_rank;
  r.timeout_seconds = 20;
  return r;
}

TEST(CoordinatorRpc, FourWorkersRendezvousWithDp2Tp2Groups) {
  CoordinatorServer server(server_options(4, 2, 2));
  server.start();
  ASSERT_GT(server.port(), 0);
  const auto regs = run_concurrently(4, [&](int i) {
    CoordinatorClient c(server.address(), "", client_options());
    RegisterOptions r = reg(3 - i);                                    // arrive in reverse local-rank order
    if (i == 3) r.nccl_id_proposals["world"] = std::string(128, 'w');  // local rank 0 leads world
    return c.register_worker(r);
  });
  std::set<int> ranks;
  std::map<std::string, std::pair<std::string, std::vector<int>>> groups;
  for (const auto& r : regs) {
    ranks.insert(r.rank);
    EXPECT_EQ(r.world_size, 4);
    EXPECT_EQ(r.dp_size, 2);
    EXPECT_EQ(r.tp_size, 2);
    EXPECT_EQ(r.dp_rank, r.rank / 2);
    EXPECT_EQ(r.tp_rank, r.rank % 2);
    EXPECT_EQ(r.generation, 1);
    EXPECT_EQ(r.group("dp_" + std::to_string(r.tp_rank)).ranks, (std::vector<int>{r.tp_rank, 2 + r.tp_rank}));
    EXPECT_EQ(r.group("tp_" + std::to_string(r.dp_rank)).ranks,
              (std::vector<int>{2 * r.dp_rank, 2 * r.dp_rank + 1}));
    for (const auto& g : r.groups) {
      EXPECT_EQ(g.nccl_unique_id.size(), 128u);
      auto [it, inserted] = groups.emplace(g.name, std::make_pair(g.nccl_unique_id, g.ranks));
      if (!inserted) {  // every member of a group got the same id and members
        EXPECT_EQ(it->second.first, g.nccl_unique_id) << g.name;
        EXPECT_EQ(it->second.second, g.ranks) << g.name;
      }
    }
  }
  EXPECT_EQ(ranks, (std::set<int>{0, 1, 2, 3}));
  EXPECT_EQ(regs[3].rank, 0);    // local rank 0 on the only host
  EXPECT_EQ(groups.size(), 5u);  // world, dp_0, dp_1, tp_0, tp_1
  EXPECT_EQ(groups["world"].first, std::string(128, 'w'));
  EXPECT_EQ(groups["world"].second, (std::vector<int>{0, 1, 2, 3}));
}

TEST(CoordinatorRpc, SilentWorkerIsDetectedAndOthersSeeJobFailed) {
  CoordinatorServer server(server_options(2, 2, 1));
  server.start();
  std::vector<std::unique_ptr<CoordinatorClient>> clients;
  for (int i = 0; i < 2; ++i)
    clients.push_back(std::make_unique<CoordinatorClient>(server.address(), "", client_options()));
  run_concurrently(2, [&](int i) { return clients[i]->register_worker(reg(i)); });
  for (auto& c : clients) c->start_heartbeats(Ms(100));
  std::this_thread::sleep_for(Ms(300));
  EXPECT_FALSE(clients[0]->job_failed());
  EXPECT_EQ(clients[0]->job_state(), "RUNNING");

  const auto silent_since = std::chrono::steady_clock::now();
  clients[1]->stop_heartbeats();  // as if rank 1 hung or died
  while (!clients[0]->job_failed() &&
         std::chrono::steady_clock::now() - silent_since < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(Ms(20));
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - silent_since).count();
  ASSERT_TRUE(clients[0]->job_failed());
  // timeout 1 s + check every 0.1 s + heartbeat every 0.1 s, with slack for a loaded machine
  EXPECT_LT(took, 3.0);
  EXPECT_NE(clients[0]->failure_message().find("rank 1"), std::string::npos) << clients[0]->failure_message();
  EXPECT_EQ(clients[0]->job_state(), "FAILED");
  const auto status = clients[0]->job_status();
  EXPECT_EQ(status.state, "FAILED");
  EXPECT_FALSE(status.ranks[1].alive);
  EXPECT_TRUE(status.ranks[0].alive);
}

class RawStub {
 public:
  RawStub(const std::string& address, const std::string& token = "")
      : stub_(
            keel::v1::Coordinator::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
        token_(token) {}
  void prepare(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token_.empty()) ctx.AddMetadata("authorization", token_);
  }
  grpc::StatusCode heartbeat(const std::string& job, int rank, int64_t generation) {
    keel::v1::HeartbeatRequest req;
    req.set_job_id(job);
    req.set_rank(rank);
    req.set_generation(generation);
    keel::v1::HeartbeatReply reply;
    grpc::ClientContext ctx;
    prepare(ctx);
    return stub_->Heartbeat(&ctx, req, &reply).error_code();
  }
  grpc::Status status(const std::string& job) {
    keel::v1::JobStatusRequest req;
    req.set_job_id(job);
    keel::v1::JobStatusReply reply;
    grpc::ClientContext ctx;
    prepare(ctx);
    return stub_->JobStatus(&ctx, req, &reply);
  }
  grpc::Status register_worker(const keel::v1::RegisterRequest& req) {
    keel::v1::RegisterReply reply;
    grpc::ClientContext ctx;
    prepare(ctx);
    return stub_->Register(&ctx, req, &reply);
  }

 private:
  std::unique_ptr<keel::v1::Coordinator::Stub> stub_;
  std::string token_;
};

TEST(CoordinatorRpc, BadRequestsGetClearStatusCodes) {
  CoordinatorServer server(server_options(1, 1, 1));
  server.start();
  CoordinatorClient client(server.address(), "", client_options());
  const Registration r = client.register_worker(reg(0));
  RawStub raw(server.address());
  EXPECT_EQ(raw.heartbeat("job", 0, r.generation), grpc::StatusCode::OK);
  EXPECT_EQ(raw.heartbeat("nope", 0, r.generation), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(raw.heartbeat("job", 7, r.generation), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(raw.heartbeat("job", -1, r.generation), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(raw.heartbeat("job", 0, r.generation + 5), grpc::StatusCode::FAILED_PRECONDITION);
  const grpc::Status unknown = raw.status("nope");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(unknown.error_message().find("unknown job id 'nope'"), std::string::npos);

  keel::v1::RegisterRequest req;
  req.set_job_id("job");
  req.set_host("x");
  req.set_requested_rank(9);
  EXPECT_EQ(raw.register_worker(req).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  req.set_requested_rank(-1);
  EXPECT_EQ(raw.register_worker(req).error_code(), grpc::StatusCode::FAILED_PRECONDITION);  // job running
  req.set_host(std::string(5 << 20, 'h'));  // 5 MiB > the 4 MiB limit
  EXPECT_EQ(raw.register_worker(req).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  try {
    client.commit_shard(-1, "s", 1, 1);
    FAIL() << "negative step accepted";
  } catch (const CoordinatorError& e) {
    EXPECT_EQ(e.grpc_code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  }
}

// The HeartbeatStream workers use: every beat answered once, in order, with the job state; the
// first refused beat ends the stream with the same status code the unary Heartbeat gives; the
// token is checked when the stream opens.
TEST(CoordinatorRpc, HeartbeatStreamAnswersEveryBeatAndEndsWithTheFirstRefusal) {
  CoordinatorServer server(server_options(1, 1, 1));
  server.start();
  CoordinatorClient client(server.address(), "", client_options());
  const Registration r = client.register_worker(reg(0));
  auto stub = keel::v1::Coordinator::NewStub(grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stream = stub->HeartbeatStream(&ctx);
  keel::v1::HeartbeatRequest beat;
  beat.set_job_id("job");
  beat.set_rank(0);
  beat.set_generation(r.generation);
  for (int step = 0; step < 5; ++step) {
    beat.set_step(100 + step);
    ASSERT_TRUE(stream->Write(beat));
    keel::v1::HeartbeatReply reply;
    ASSERT_TRUE(stream->Read(&reply));
    EXPECT_EQ(reply.job_state(), keel::v1::RUNNING);
    EXPECT_EQ(server.job().snapshot().ranks.at(0).last_step, 100 + step);  // this beat was applied before its reply
  }
  beat.set_generation(r.generation + 3);  // stale generation: refused, stream over
  ASSERT_TRUE(stream->Write(beat));
  keel::v1::HeartbeatReply reply;
  EXPECT_FALSE(stream->Read(&reply));
  const grpc::Status ended = stream->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << ended.error_message();
  EXPECT_NE(ended.error_message().find("generation"), std::string::npos) << ended.error_message();

  CoordinatorServer guarded(server_options(1, 1, 1, "s3cret"));
  guarded.start();
  auto guarded_stub =
      keel::v1::Coordinator::NewStub(grpc::CreateChannel(guarded.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext no_token;
  no_token.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto refused = guarded_stub->HeartbeatStream(&no_token);
  refused->Write(beat);
  EXPECT_FALSE(refused->Read(&reply));
  EXPECT_EQ(refused->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST(CoordinatorRpc, DuplicateRequestedRankIsRejected) {
  CoordinatorServer server(server_options(2, 2, 1));
  server.start();
  CoordinatorClient a(server.address(), "", client_options());
  auto first = std::async(std::launch::async, [&] { return a.register_worker(reg(0, 1)); });
  while (server.job().snapshot().registered < 1) std::this_thread::sleep_for(Ms(5));
  CoordinatorClient b(server.address(), "", client_options());
  try {
    b.register_worker(reg(1, 1));
    FAIL() << "duplicate rank accepted";
  } catch (const CoordinatorError& e) {
    EXPECT_EQ(e.grpc_code(), static_cast<int>(grpc::StatusCode::ALREADY_EXISTS));
    EXPECT_NE(std::string(e.what()).find("rank 1 is already registered"), std::string::npos) << e.what();
  }
  EXPECT_EQ(b.register_worker(reg(1)).rank, 0);
  EXPECT_EQ(first.get().rank, 1);
}

TEST(CoordinatorRpc, TokenIsRequiredWhenConfigured) {
  CoordinatorServer server(server_options(1, 1, 1, "s3cret"));
  server.start();
  EXPECT_EQ(RawStub(server.address()).status("job").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(RawStub(server.address(), "Bearer wrong").status("job").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(RawStub(server.address(), "Bearer s3cret").status("job").error_code(), grpc::StatusCode::OK);
  CoordinatorClient bad(server.address(), "nope", client_options());
  try {
    bad.latest_committed();
    FAIL() << "bad token accepted";
  } catch (const CoordinatorError& e) {
    EXPECT_EQ(e.grpc_code(), static_cast<int>(grpc::StatusCode::UNAUTHENTICATED));
  }
  CoordinatorClient good(server.address(), "s3cret", client_options());
  EXPECT_EQ(good.register_worker(reg(0)).rank, 0);
  EXPECT_EQ(good.latest_committed(), -1);
}

TEST(CoordinatorRpc, AsyncMetricsArriveAndOverflowDropsOldest) {
  CoordinatorServer server(server_options(1, 1, 1));
  server.start();
  ClientOptions o = client_options();
  o.metrics_queue_capacity = 100;
  o.max_items_per_batch = 7;
  CoordinatorClient client(server.address(), "", o);
  // Before registration nothing is sent, so the bounded queue overflows without blocking the caller.
  for (int step = 0; step < 130; ++step) client.report_metrics_async(step, {{"loss", 10.0 - step * 0.01}});
  EXPECT_EQ(client.metrics_dropped(), 30u);
  client.register_worker(reg(0));
  ASSERT_TRUE(client.flush_metrics(Ms(10000)));
  EXPECT_EQ(client.job_status().ranks[0].metrics_steps_received, 100u);
  for (int step = 130; step < 150; ++step)
    client.report_metrics_async(step, {{"loss", 1.0}, {"grad_norm", 0.5}});
  client.report_event_async("spike", 149, R"({"loss":[1,9]})", "skip");
  client.report_event_async("rollback", 149, "{}", "restore step 100");
  ASSERT_TRUE(client.flush_metrics(Ms(10000)));
  const auto status = client.job_status();
  ASSERT_EQ(status.ranks.size(), 1u);
  EXPECT_EQ(status.ranks[0].metrics_steps_received, 120u);  // 100 kept + 20
  EXPECT_EQ(status.ranks[0].events_received, 2u);
  EXPECT_EQ(status.ranks[0].last_step, 149);
  EXPECT_EQ(status.ranks[0].last_values.at("grad_norm"), 0.5);
  const auto events = server.job().recent_events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, "spike");
  EXPECT_EQ(events[1].action, "restore step 100");
  // The stream reopens after a flush.
  client.report_metrics_async(150, {{"loss", 0.9}});
  ASSERT_TRUE(client.flush_metrics(Ms(10000)));
  EXPECT_EQ(client.job_status().ranks[0].metrics_steps_received, 121u);
}

TEST(CoordinatorRpc, CheckpointCommitAndOrderlyCompletion) {
  CoordinatorServer server(server_options(2, 1, 2));
  server.start();
  std::vector<std::unique_ptr<CoordinatorClient>> clients;
  for (int i = 0; i < 2; ++i)
    clients.push_back(std::make_unique<CoordinatorClient>(server.address(), "", client_options()));
  const auto regs = run_concurrently(2, [&](int i) { return clients[i]->register_worker(reg(i)); });
  const auto committed = run_concurrently(2, [&](int i) {
    return clients[i]->commit_shard(100, "model-tp" + std::to_string(regs[i].tp_rank), 1234, 0xabcd, 10.0);
  });
  EXPECT_TRUE(committed[0]);  // both waited for the other writer
  EXPECT_TRUE(committed[1]);
  EXPECT_EQ(clients[0]->latest_committed(), 100);
  EXPECT_FALSE(clients[0]->commit_shard(200, "model-tp0", 1, 1));  // the other writer is missing
  EXPECT_EQ(clients[1]->latest_committed(), 100);

  for (auto& c : clients) c->start_heartbeats(Ms(100));
  clients[0]->shutdown("done", 0);
  EXPECT_EQ(clients[1]->job_status().state, "STOPPING");
  clients[1]->shutdown("done", 0);
  EXPECT_EQ(server.job().wait_finished(std::chrono::seconds(5)), JobPhase::kCompleted);
  EXPECT_FALSE(clients[1]->job_failed());
}

}  // namespace
}  // namespace keel::coord
