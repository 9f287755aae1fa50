// Faults survived with real processes on the CPU (`keel train --nproc 2`: a real keel-coordinator
// and two keel-worker ranks under a real mpirun), each compared byte for byte with the uninterrupted
// run made by the reliability_reference fixture:
//   - a worker killed with SIGKILL mid-step, and one frozen with SIGSTOP: the heartbeat notices it
//     within a bounded time, the job restarts from the last committed checkpoint (--max-restarts)
//     and its final weights, AdamW moments and RNG state equal the uninterrupted run's;
//   - the coordinator killed with SIGKILL: the workers are stopped, a new coordinator (same state
//     folder: no committed checkpoint forgotten) restarts the job, which ends bit-identical;
//   - SIGTERM to `keel train` (preemption): the workers finish their step, save, and the job exits
//     with code 6; `--resume` continues it bit-identically. The same for a single-process run.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "tests/reliability/reliability_util.h"

namespace keel::reliability {
namespace {

constexpr int kSteps = 120;
const std::string kDp2Args = KEEL_RELIABILITY_DP2_ARGS;
const std::string kSingleArgs = KEEL_RELIABILITY_SINGLE_ARGS;
constexpr int kSingleSteps = KEEL_RELIABILITY_SINGLE_STEPS;

std::string reference(const char* name) { return std::string(KEEL_BINARY_DIR) + "/test-runs/" + name; }

// Runs the DP=2 job with --max-restarts 1, applies `fault` once rank 0 logged `at_step`, and
// returns (exit code, seconds from the fault to the restart, keel's output).
struct FaultRun {
  int exit_code = -1;
  double seconds_to_restart = -1;
  std::string output;
};
template <typename Fault>
FaultRun run_with_fault(const std::string& dir, int at_step, Fault fault) {
  const std::string log = dir + ".log";
  const pid_t keel = start_keel(dir, kDp2Args + " --max-restarts 1", log);
  EXPECT_TRUE(wait_for_step(dir, at_step)) << read_bytes(log);
  const auto fault_at = Clock::now();
  fault();
  FaultRun r;
  while (seconds_since(fault_at) < 300 && r.seconds_to_restart < 0) {
    if (read_bytes(log).find("restarting from the last committed checkpoint") != std::string::npos)
      r.seconds_to_restart = seconds_since(fault_at);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  r.exit_code = wait_exit(keel);
  r.output = read_bytes(log);
  return r;
}

pid_t worker_of(const std::string& dir) {
  auto pids = pids_matching("^[^ ]*[k]eel-worker .*--run-dir " + dir + "( |$)");
  return pids.empty() ? -1 : pids.back();
}

TEST(FaultTolerance, KilledWorkerRestartsFromTheLastCheckpointBitExact) {
  const std::string dir = fresh_dir("reliability-kill");
  pid_t victim = -1;
  const FaultRun r = run_with_fault(dir, 35, [&] {
    victim = worker_of(dir);
    ASSERT_GT(victim, 0);
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
  });
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_GE(r.seconds_to_restart, 0) << r.output;
  EXPECT_LT(r.seconds_to_restart, 30) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  std::printf("SIGKILL of a worker at step >= 35: restart began after %.1f s\n", r.seconds_to_restart);
  expect_bit_exact(reference("reliability-reference-dp2"), dir, kSteps);
}

TEST(FaultTolerance, FrozenWorkerIsNoticedByHeartbeatAndTheRestartIsBitExact) {
  const std::string dir = fresh_dir("reliability-stop");
  pid_t victim = -1;
  const FaultRun r = run_with_fault(dir, 35, [&] {
    victim = worker_of(dir);
    ASSERT_GT(victim, 0);
    ASSERT_EQ(::kill(victim, SIGSTOP), 0);
  });
  if (victim > 0) ::kill(victim, SIGKILL);  // in case it survived
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_GE(r.seconds_to_restart, 0) << r.output;
  // Heartbeat timeout (5 s) + the launcher's grace for the others to leave (10 s) + slack.
  EXPECT_LT(r.seconds_to_restart, 40) << r.output;
  EXPECT_NE(r.output.find("missed heartbeats"), std::string::npos) << r.output;
  std::printf("SIGSTOP of a worker at step >= 35: noticed, restart began after %.1f s\n", r.seconds_to_restart);
  expect_bit_exact(reference("reliability-reference-dp2"), dir, kSteps);
}

TEST(FaultTolerance, KilledCoordinatorLosesNoCheckpointAndTheJobResumesBitExact) {
  const std::string dir = fresh_dir("reliability-coordinator");
  const std::string state_file = dir + "/coordinator/coordinator_state.json";
  nlohmann::json before;
  const FaultRun r = run_with_fault(dir, 45, [&] {
    before = nlohmann::json::parse(read_bytes(state_file));
    auto pids = pids_matching("[k]eel-coordinator .*--state-dir " + dir + "/coordinator");
    ASSERT_EQ(pids.size(), 1u);
    ASSERT_EQ(::kill(pids[0], SIGKILL), 0);
  });
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_GE(r.seconds_to_restart, 0) << r.output;
  EXPECT_LT(r.seconds_to_restart, 20) << r.output;
  EXPECT_NE(r.output.find("the coordinator (pid"), std::string::npos) << r.output;
  std::printf("SIGKILL of the coordinator at step >= 45: restart began after %.1f s\n", r.seconds_to_restart);
  // The new coordinator started from the old one's state: every step committed before the kill is
  // still recorded, and its generation counts on.
  const auto after = nlohmann::json::parse(read_bytes(state_file));
  const auto committed = after["committed_steps"].get<std::vector<int64_t>>();
  ASSERT_GE(before["committed_steps"].size(), 3u) << before.dump();
  for (int64_t step : before["committed_steps"].get<std::vector<int64_t>>())
    EXPECT_NE(std::find(committed.begin(), committed.end(), step), committed.end()) << "forgot step " << step;
  EXPECT_EQ(after["latest_committed_step"].get<int64_t>(), kSteps);
  EXPECT_GT(after["generation"].get<int64_t>(), before["generation"].get<int64_t>());
  expect_bit_exact(reference("reliability-reference-dp2"), dir, kSteps);
}

// SIGTERM to keel train at step >= `at`: it exits 6 with a saved checkpoint; returns the step.
int preempt(const std::string& dir, const std::string& args, int at) {
  const std::string log = dir + ".log";
  const pid_t keel = start_keel(dir, args, log);
  EXPECT_TRUE(wait_for_step(dir, at)) << read_bytes(log);
  const auto t = Clock::now();
  EXPECT_EQ(::kill(keel, SIGTERM), 0);
  const int code = wait_exit(keel);
  const double seconds = seconds_since(t);
  const std::string output = read_bytes(log);
  EXPECT_EQ(code, 6) << output;
  EXPECT_NE(output.find("PREEMPTED (exit code 6)"), std::string::npos) << output;
  EXPECT_LT(seconds, 30) << output;
  const int last = last_logged_step(dir);
  const int saved = last + 1;  // the step in progress finished and was saved
  EXPECT_TRUE(fs::exists(step_dir(dir, saved) + "/manifest.json")) << output;
  const auto info = nlohmann::json::parse(read_bytes(dir + "/run_info.json"));
  EXPECT_EQ(info["status"], "preempted");
  std::printf("%s: SIGTERM at step >= %d: saved step %d and exited 6 after %.1f s\n", dir.c_str(), at, saved, seconds);
  return saved;
}

TEST(FaultTolerance, PreemptedDistributedJobSavesExits6AndResumesBitExact) {
  const std::string dir = fresh_dir("reliability-preempt-dp2");
  const int saved = preempt(dir, kDp2Args, 33);
  EXPECT_LT(saved, kSteps);
  auto r = keel_train(dir, kDp2Args + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  expect_bit_exact(reference("reliability-reference-dp2"), dir, kSteps);
}

TEST(FaultTolerance, PreemptedSingleProcessRunSavesExits6AndResumesBitExact) {
  const std::string dir = fresh_dir("reliability-preempt-single");
  const int saved = preempt(dir, kSingleArgs, 23);
  EXPECT_LT(saved, kSingleSteps);
  auto r = keel_train(dir, kSingleArgs + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_bit_exact(reference("reliability-reference-single"), dir, kSingleSteps);
}

}  // namespace
}  // namespace keel::reliability
