// The real keel-coordinator program as a child process, driven the way a launcher drives it: read
// "listening on HOST:PORT" from its stdout, let workers register and shut down, check the exit code.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "rpc/coordinator_client.h"
#include "tests/coordinator/coordinator_process.h"
#include "tests/coordinator/test_util.h"

namespace keel::coord {
namespace {

using testing::address_after;

// keel-coordinator with `args`, as a child process.
testing::CoordinatorProcess coordinator(std::vector<std::string> args) {
  return testing::CoordinatorProcess(KEEL_COORDINATOR_BIN, std::move(args));
}

std::string address_from(const std::string& line) {
  return address_after("listening on ", line);
}

TEST(CoordinatorBinary, OneWorkerRegistersShutsDownAndCoordinatorExitsZero) {
  testing::TempDir state;
  auto proc = coordinator({"--world-size", "1", "--job-id", "bin", "--state-dir", state.path()});
  const std::string address = address_from(proc.next_line(std::chrono::seconds(30)));
  ASSERT_FALSE(address.empty()) << "no 'listening on' line";
  EXPECT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;
  ClientOptions o;
  o.job_id = "bin";
  auto cp = std::make_unique<CoordinatorClient>(address, "", o);
  auto& client = *cp;
  const Registration r = client.register_worker({});
  EXPECT_EQ(r.rank, 0);
  EXPECT_EQ(r.world_size, 1);
  EXPECT_TRUE(client.commit_shard(3, "model", 10, 20));
  client.report_metrics_async(3, {{"loss", 1.5}});
  client.shutdown("finished", 0);
  cp.reset();  // a worker exits after shutdown; its idle connection would delay the server's stop
  EXPECT_EQ(proc.wait_exit(std::chrono::seconds(30)), 0);
}

TEST(CoordinatorBinary, FailedJobExitsNonZero) {
  testing::TempDir dir;
  const std::string token_file = dir.path() + "/token";
  keel::fs::write_file_atomic(token_file, "t0k\n");
  auto proc = coordinator({"--world-size", "1", "--linger", "0", "--token-file", token_file});
  const std::string address = address_from(proc.next_line(std::chrono::seconds(30)));
  ASSERT_FALSE(address.empty());
  {
    CoordinatorClient client(address, "t0k");
    client.register_worker({});
    client.shutdown("diverged", 3);
  }
  EXPECT_EQ(proc.wait_exit(std::chrono::seconds(30)), 1);
}

TEST(CoordinatorBinary, BadLayoutIsRefused) {
  auto proc = coordinator({"--world-size", "4", "--dp", "3", "--tp", "2"});
  EXPECT_EQ(proc.wait_exit(std::chrono::seconds(30)), 1);
  auto usage = coordinator({"--dp", "1"});  // --world-size missing
  EXPECT_EQ(usage.wait_exit(std::chrono::seconds(30)), 2);
}

TEST(CoordinatorBinary, PrintsTheMetricsAddressAfterTheListenAddress) {
  auto proc = coordinator({"--world-size", "1", "--metrics-port", "0"});
  const std::string address = address_from(proc.next_line(std::chrono::seconds(30)));
  ASSERT_FALSE(address.empty());
  const std::string metrics = address_after("metrics on ", proc.next_line(std::chrono::seconds(30)));
  ASSERT_EQ(metrics.rfind("127.0.0.1:", 0), 0u) << "no 'metrics on 127.0.0.1:PORT' line";
  const int port = std::stoi(metrics.substr(metrics.find(':') + 1));
  EXPECT_GT(port, 0);
  EXPECT_NE(metrics, address);
}

TEST(CoordinatorBinary, MetricsCanBeTurnedOff) {
  auto proc = coordinator({"--world-size", "1", "--metrics-port", "-1"});
  ASSERT_FALSE(address_from(proc.next_line(std::chrono::seconds(30))).empty());
  EXPECT_EQ(proc.next_line(std::chrono::seconds(30)), "metrics off");
}

TEST(CoordinatorBinary, MetricsPortInUseIsAnError) {
  auto first = coordinator({"--world-size", "1"});
  ASSERT_FALSE(address_from(first.next_line(std::chrono::seconds(30))).empty());
  const std::string metrics = address_after("metrics on ", first.next_line(std::chrono::seconds(30)));
  ASSERT_FALSE(metrics.empty());
  auto second = coordinator({"--world-size", "1", "--metrics-port", metrics.substr(metrics.find(':') + 1)});
  EXPECT_EQ(second.wait_exit(std::chrono::seconds(30)), 1);
  auto bad = coordinator({"--world-size", "1", "--metrics-port", "70000"});
  EXPECT_EQ(bad.wait_exit(std::chrono::seconds(30)), 2);
}

}  // namespace
}  // namespace keel::coord
