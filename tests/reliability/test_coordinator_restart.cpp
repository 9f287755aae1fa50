// The coordinator killed (SIGKILL) and restarted, with the real keel-coordinator program and the
// worker-side client. Keel's choice: workers stop cleanly and the job resumes (it does not try to
// re-join a running job). A worker that cannot reach the coordinator for
// coordinator.loss_timeout_seconds marks the job failed and leaves (keel-worker exits 4, leaving
// its collectives); the coordinator restarted on the same --state-dir still knows every committed
// checkpoint and starts the next generation, so the resumed job continues from the last committed
// step and a worker of the old generation is refused. (tests/reliability/test_fault_tolerance.cpp
// does the same through `keel train --nproc 2` and checks the resumed weights bit for bit.)
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "common/fs.h"
#include "rpc/coordinator_client.h"
#include "tests/coordinator/coordinator_process.h"
#include "tests/coordinator/test_util.h"

namespace keel::coord {
namespace {

using Ms = std::chrono::milliseconds;
using testing::address_after;

testing::CoordinatorProcess start(const std::string& state_dir, const std::string& listen) {
  return testing::CoordinatorProcess(KEEL_COORDINATOR_BIN,
                                     {"--world-size", "1", "--job-id", "job", "--state-dir", state_dir, "--listen",
                                      listen, "--metrics-port", "-1", "--heartbeat-timeout", "30"});
}

ClientOptions options() {
  ClientOptions o;
  o.job_id = "job";
  o.rpc_timeout_seconds = 3;
  o.coordinator_loss_timeout_seconds = 2;
  return o;
}

RegisterOptions one_worker() {
  RegisterOptions r;
  r.host = "h";
  r.requested_world_size = 1;
  r.requested_rank = 0;
  r.timeout_seconds = 10;
  return r;
}

TEST(CoordinatorRestart, WorkersStopCleanlyAndARestartedCoordinatorKeepsEveryCommittedCheckpoint) {
  testing::TempDir dir;
  const std::string state = dir.path() + "/state";
  std::string address;
  {
    auto first = start(state, "127.0.0.1:0");
    address = address_after("listening on ", first.next_line(Ms(10000)));
    ASSERT_FALSE(address.empty());
    CoordinatorClient worker(address, "", options());
    const Registration r = worker.register_worker(one_worker());
    EXPECT_EQ(r.generation, 1);
    worker.start_heartbeats(Ms(200));
    EXPECT_TRUE(worker.commit_shard(10, "tp0", 100, 1));
    EXPECT_TRUE(worker.commit_shard(20, "tp0", 100, 2));

    ASSERT_EQ(::kill(first.pid(), SIGKILL), 0);
    EXPECT_EQ(first.wait_exit(Ms(5000)), 128 + SIGKILL);
    const auto killed = std::chrono::steady_clock::now();
    while (!worker.job_failed() && std::chrono::steady_clock::now() - killed < std::chrono::seconds(15))
      std::this_thread::sleep_for(Ms(50));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
    ASSERT_TRUE(worker.job_failed()) << "the worker did not notice the coordinator was gone";
    EXPECT_NE(worker.failure_message().find("lost contact with the coordinator"), std::string::npos)
        << worker.failure_message();
    EXPECT_LT(seconds, 2 + 3) << "loss timeout 2 s, plus one heartbeat deadline";
    std::printf("worker noticed the coordinator's death after %.1f s (loss timeout 2 s)\n", seconds);
    // A commit now cannot succeed: the checkpoint in progress is never taken for committed.
    EXPECT_THROW(worker.commit_shard(30, "tp0", 100, 3), CoordinatorError);
  }
  const auto saved = nlohmann::json::parse(fs::read_file(state + "/coordinator_state.json"));
  EXPECT_EQ(saved["committed_steps"], nlohmann::json::array({10, 20}));

  // Restarted on the same address and state: it knows the committed steps, and it is generation 2.
  auto second = start(state, address);
  ASSERT_EQ(address_after("listening on ", second.next_line(Ms(10000))), address);
  CoordinatorClient resumed(address, "", options());
  int64_t latest = -2;
  for (int i = 0; i < 20 && latest == -2; ++i) {  // the first call may meet the dead server's reset
    try {
      latest = resumed.latest_committed();
    } catch (const CoordinatorError&) {
      std::this_thread::sleep_for(Ms(100));
    }
  }
  EXPECT_EQ(latest, 20);
  const Registration r2 = resumed.register_worker(one_worker());
  EXPECT_EQ(r2.generation, 2);
  EXPECT_TRUE(resumed.commit_shard(30, "tp0", 100, 3));
  EXPECT_EQ(resumed.latest_committed(), 30);
  resumed.shutdown("finished", 0);
  EXPECT_EQ(second.wait_exit(Ms(15000)), 0);
  const auto final_state = nlohmann::json::parse(fs::read_file(state + "/coordinator_state.json"));
  EXPECT_EQ(final_state["committed_steps"], nlohmann::json::array({10, 20, 30}));
}

// A coordinator that is frozen (SIGSTOP: the process and its sockets stay, nothing answers) must
// not block the worker's heartbeat thread on its open HeartbeatStream: each beat gives up after its
// timeout and the worker marks the job failed once the loss timeout has passed.
TEST(CoordinatorRestart, AFrozenCoordinatorIsNoticedThroughTheHeartbeatTimeout) {
  testing::TempDir dir;
  auto coordinator = start(dir.path() + "/state", "127.0.0.1:0");
  const std::string address = address_after("listening on ", coordinator.next_line(Ms(10000)));
  ASSERT_FALSE(address.empty());
  CoordinatorClient worker(address, "", options());
  worker.register_worker(one_worker());
  worker.start_heartbeats(Ms(200));
  std::this_thread::sleep_for(Ms(600));
  ASSERT_FALSE(worker.job_failed()) << worker.failure_message();
  ASSERT_EQ(worker.job_state(), "RUNNING");

  ASSERT_EQ(::kill(coordinator.pid(), SIGSTOP), 0);
  const auto frozen = std::chrono::steady_clock::now();
  while (!worker.job_failed() && std::chrono::steady_clock::now() - frozen < std::chrono::seconds(15))
    std::this_thread::sleep_for(Ms(50));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - frozen).count();
  ::kill(coordinator.pid(), SIGCONT);
  ASSERT_TRUE(worker.job_failed()) << "the worker did not notice the frozen coordinator";
  EXPECT_NE(worker.failure_message().find("lost contact with the coordinator"), std::string::npos)
      << worker.failure_message();
  // loss timeout 2 s, plus one beat's timeout (1 s at a 200 ms interval) and an interval of slack
  EXPECT_LT(seconds, 2 + 1 + 1.5);
  std::printf("worker noticed the frozen coordinator after %.1f s (loss timeout 2 s)\n", seconds);
  worker.stop_heartbeats();  // returns: the beat in flight was cancelled, not left blocking
}

TEST(CoordinatorRestart, AWorkerOfTheOldGenerationIsRefused) {
  testing::TempDir dir;
  const std::string state = dir.path() + "/state";
  auto first = start(state, "127.0.0.1:0");
  const std::string address = address_after("listening on ", first.next_line(Ms(10000)));
  CoordinatorClient old_worker(address, "", options());
  old_worker.register_worker(one_worker());
  ::kill(first.pid(), SIGKILL);
  first.wait_exit(Ms(5000));
  auto second = start(state, address);
  ASSERT_EQ(address_after("listening on ", second.next_line(Ms(10000))), address);
  CoordinatorClient fresh(address, "", options());
  // The first call on the reused port may meet the dead server's connection being reset: retry.
  for (int i = 0; i < 20; ++i) {
    try {
      fresh.latest_committed();
      break;
    } catch (const CoordinatorError&) {
      std::this_thread::sleep_for(Ms(100));
    }
  }
  auto registration = std::async(std::launch::async, [&] { return fresh.register_worker(one_worker()); });
  EXPECT_EQ(registration.get().generation, 2);
  try {  // the old worker's commit names generation 1
    old_worker.commit_shard(10, "tp0", 1, 1);
    FAIL() << "a stale generation's commit was accepted";
  } catch (const CoordinatorError& e) {
    EXPECT_EQ(e.grpc_code(), 9) << e.what();  // FAILED_PRECONDITION
    EXPECT_NE(std::string(e.what()).find("stale generation 1"), std::string::npos) << e.what();
  }
  old_worker.start_heartbeats(Ms(100));
  for (int i = 0; i < 50 && !old_worker.job_failed(); ++i) std::this_thread::sleep_for(Ms(50));
  EXPECT_TRUE(old_worker.job_failed());
  EXPECT_NE(old_worker.failure_message().find("stale generation"), std::string::npos) << old_worker.failure_message();
}

}  // namespace
}  // namespace keel::coord
