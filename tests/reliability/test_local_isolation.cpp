// A shared machine (issue 28): every local user can reach 127.0.0.1, so `keel train` gives the
// coordinator it starts a random per-job token. With the real `keel train` (tiny config, a few
// steps, in this process beside its real keel-coordinator):
//   - the token is in RUN_DIR/coordinator/token, mode 0600, while the job runs (and gone after);
//     it is on no command line (/proc/PID/cmdline) and in no log;
//   - a second local client without it cannot register, read the job's status or commit a
//     checkpoint in rank 0's name (UNAUTHENTICATED); with the file's token it can talk to the job;
//   - `--no-token` still trains as before (tokenless), and even then a forged commit of a step no
//     shard writer wrote is refused (the coordinator sees the run's checkpoints folder).
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <cstdio>
#include <regex>

#include "keel/v1/coordinator.grpc.pb.h"
#include "rpc/coordinator_client.h"
#include "tests/reliability/reliability_util.h"

namespace keel::reliability {
namespace {

using coord::ClientOptions;
using coord::CoordinatorClient;
using coord::CoordinatorError;

// The coordinator's gRPC address from keel train's log ("coordinator on HOST:PORT"), waiting up to
// `timeout_s` for it; "" if it never came.
std::string coordinator_address(const std::string& log, double timeout_s = 120) {
  const std::regex line("coordinator on (127\\.0\\.0\\.1:[0-9]+)");
  const auto start = Clock::now();
  while (seconds_since(start) < timeout_s) {
    std::smatch m;
    const std::string text = read_bytes(log);
    if (std::regex_search(text, m, line)) return m[1].str();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "";
}

ClientOptions client_options() {
  ClientOptions o;
  o.rpc_timeout_seconds = 10;
  return o;
}

// Waits until the job's rendezvous completed (its rank 0 exists), asking with `token`.
bool wait_running(const std::string& address, const std::string& token) {
  CoordinatorClient client(address, token, client_options());
  const auto start = Clock::now();
  while (seconds_since(start) < 120) {
    if (client.job_status().state == "RUNNING") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// A CommitCheckpoint straight on the wire in rank 0's name (generation 1), as any local process
// can send one: step 123456, which no shard writer wrote.
grpc::Status forged_commit(const std::string& address, const std::string& token = "") {
  auto stub = keel::v1::Coordinator::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  keel::v1::ShardWritten request;
  request.set_job_id("default");
  request.set_rank(0);
  request.set_generation(1);
  request.set_step(123456);
  request.set_shard_name("tp0");
  request.set_bytes(1);
  request.set_crc32(1);
  keel::v1::CommitReply reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  return stub->CommitCheckpoint(&ctx, request, &reply);
}

// The grpc code of a refused client call (0 when it was not refused).
template <typename F>
int refusal_of(F call) {
  try {
    call();
  } catch (const CoordinatorError& e) {
    return e.grpc_code();
  }
  return 0;
}

// A run far longer than the test needs; the test ends it with SIGTERM (preemption: it saves its
// step and exits 6) once it has seen what it came for, so it costs a few seconds however fast the
// machine is, and never ends before the checks.
const std::string kLongRun = "--set train.steps=5000 --set checkpoint.every=10 --set train.eval_every=1000 "
                             "--set diagnostics.every=0";

// `keel train` on a fresh run directory with a fresh log (an old log would name an old address).
pid_t start_fresh(const std::string& dir, const std::string& extra) {
  const std::string log = dir + ".log";
  std::remove(log.c_str());
  return start_keel(dir, extra, log, "-u KEEL_COORDINATOR_TOKEN");
}

// SIGTERM to keel train: it saves and exits 6 (kExitPreempted); returns its output.
std::string preempt(pid_t keel, const std::string& log) {
  EXPECT_EQ(::kill(keel, SIGTERM), 0);
  const int code = wait_exit(keel);
  const std::string output = read_bytes(log);
  EXPECT_EQ(code, 6) << output;
  return output;
}

TEST(LocalIsolation, KeelTrainGivesItsCoordinatorAPerJobTokenThatALocalIntruderLacks) {
  const std::string dir = fresh_dir("isolation-token"), log = dir + ".log";
  const pid_t keel = start_fresh(dir, kLongRun);
  const std::string address = coordinator_address(log);
  ASSERT_FALSE(address.empty()) << read_bytes(log);

  const std::string token_file = dir + "/coordinator/token";
  struct stat st {};
  ASSERT_EQ(::stat(token_file.c_str(), &st), 0) << "no per-job token file; " << read_bytes(log);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the token file must be readable by its owner only";
  ASSERT_EQ(::stat((dir + "/coordinator").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u) << "the token's folder must be closed to others";
  const std::string token = coord::resolve_coordinator_token(token_file);
  EXPECT_EQ(token.size(), 64u);
  ASSERT_TRUE(wait_running(address, token)) << read_bytes(log);

  // A second local client without the token: shut out of every call.
  CoordinatorClient intruder(address, "", client_options());
  coord::RegisterOptions registration;
  registration.timeout_seconds = 5;
  EXPECT_EQ(refusal_of([&] { intruder.register_worker(registration); }), 16);  // UNAUTHENTICATED
  EXPECT_EQ(refusal_of([&] { intruder.job_status(); }), 16);
  EXPECT_EQ(refusal_of([&] { intruder.latest_committed(); }), 16);
  EXPECT_EQ(forged_commit(address).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(forged_commit(address, "guess").error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // The token's owner can: the file holds this job's token, and the job's real checkpoints are
  // recorded as committed once sealed on disk.
  CoordinatorClient owner(address, token, client_options());
  int64_t committed = -1;
  const auto start = Clock::now();
  while (committed < 10 && seconds_since(start) < 120) {
    committed = owner.latest_committed();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GE(committed, 10) << read_bytes(log);
  EXPECT_NE(committed, 123456);
  if (committed >= 0) EXPECT_TRUE(fs::exists(step_dir(dir, static_cast<int>(committed)) + "/manifest.json"));

  // No command line of the job's processes shows the token (ps would).
  const auto coordinators = pids_matching("[k]eel-coordinator .*--checkpoint-dir " + dir + "/checkpoints");
  EXPECT_EQ(coordinators.size(), 1u);
  for (pid_t pid : coordinators)
    EXPECT_EQ(read_bytes("/proc/" + std::to_string(pid) + "/cmdline").find(token), std::string::npos);
  EXPECT_EQ(read_bytes("/proc/" + std::to_string(keel) + "/cmdline").find(token), std::string::npos);

  const std::string output = preempt(keel, log);
  EXPECT_FALSE(fs::exists(token_file)) << "the token file outlived its job";
  EXPECT_EQ(output.find(token), std::string::npos) << "the token was printed";
  EXPECT_EQ(read_bytes(dir + "/train.log").find(token), std::string::npos) << "the token was logged";
  EXPECT_EQ(read_bytes(dir + "/config.yaml").find(token_file), std::string::npos)
      << "the per-job token file must not become part of the run's config";
}

TEST(LocalIsolation, NoTokenStillTrainsAndAForgedCommitIsStillRefused) {
  const std::string dir = fresh_dir("isolation-no-token"), log = dir + ".log";
  const pid_t keel = start_fresh(dir, kLongRun + " --no-token");
  const std::string address = coordinator_address(log);
  ASSERT_FALSE(address.empty()) << read_bytes(log);
  EXPECT_FALSE(fs::exists(dir + "/coordinator/token"));
  // Tokenless as before: any local client reads the job.
  ASSERT_TRUE(wait_running(address, "")) << read_bytes(log);
  // But a commit in rank 0's name of a step no shard writer wrote is refused, and not recorded.
  const grpc::Status forged = forged_commit(address);
  EXPECT_EQ(forged.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << forged.error_message();
  EXPECT_NE(forged.error_message().find("no shard of that step was written"), std::string::npos)
      << forged.error_message();
  CoordinatorClient anyone(address, "", client_options());
  EXPECT_NE(anyone.latest_committed(), 123456);
  const std::string output = preempt(keel, log);
  EXPECT_NE(output.find("--no-token"), std::string::npos) << "a tokenless job must say so: " << output;

  // And a short tokenless run trains to its end as before.
  const std::string short_dir = fresh_dir("isolation-no-token-short");
  const auto run = keel_train(short_dir, "--set train.steps=20 --set checkpoint.every=10 --set train.eval_every=20 "
                                         "--set diagnostics.every=0 --no-token");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_TRUE(fs::exists(step_dir(short_dir, 20) + "/manifest.json")) << run.output;
  EXPECT_FALSE(fs::exists(short_dir + "/coordinator/token"));
}

}  // namespace
}  // namespace keel::reliability
