// Helpers of the reliability tests: start `keel train` in the background, wait for a step, find a
// run's worker or coordinator processes, and compare a run's final checkpoint byte for byte with
// an uninterrupted reference run (made once by a CTest fixture, tests/reliability/CMakeLists.txt).
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/fs.h"
#include "tests/worker/process_util.h"

namespace keel::reliability {

using namespace keel::testing_util;
using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// `[env] keel train tiny.yaml --run-dir DIR --set data.dir=<fixture> EXTRA > LOG 2>&1` in the
// background; returns the pid of keel itself.
inline pid_t start_keel(const std::string& run_dir, const std::string& extra, const std::string& log,
                        const std::string& env = "") {
  const std::string command = (env.empty() ? "" : "env " + env + " ") + keel_binary() + " train " + tiny_config() +
                              " --run-dir " + run_dir + " --set data.dir=" + test_dataset() + " " + extra + " > " +
                              log + " 2>&1";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

inline int wait_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The newest step in metrics.jsonl (-1 when none yet).
inline int last_logged_step(const std::string& run_dir) {
  const std::string text = read_bytes(run_dir + "/metrics.jsonl");
  const auto end = text.find_last_of('\n', text.size() >= 2 ? text.size() - 2 : 0);
  const std::string line = text.substr(end == std::string::npos ? 0 : end + 1);
  const auto at = line.find("\"step\":");
  return at == std::string::npos ? -1 : std::atoi(line.c_str() + at + 7);
}

// Waits (up to `timeout_s`) until rank 0 logged `step`. False on timeout.
inline bool wait_for_step(const std::string& run_dir, int step, double timeout_s = 120) {
  const auto start = Clock::now();
  while (seconds_since(start) < timeout_s) {
    if (last_logged_step(run_dir) >= step) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Pids of processes whose command line matches `pattern` (pgrep -f; "[k]eel" keeps pgrep from
// matching the shell that runs it).
inline std::vector<pid_t> pids_matching(const std::string& pattern) {
  std::vector<pid_t> pids;
  const auto r = run_process("pgrep -f '" + pattern + "'");
  size_t at = 0;
  while (at < r.output.size()) {
    const auto end = r.output.find('\n', at);
    const int pid = std::atoi(r.output.substr(at, end - at).c_str());
    if (pid > 0) pids.push_back(pid);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return pids;
}

inline std::string step_dir(const std::string& run_dir, int step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08d", step);
  return run_dir + "/checkpoints/" + name;
}

// The final checkpoint of `run_dir` equals the reference's byte for byte (every safetensors file:
// weights, AdamW moments, RNG), and so does every logged loss.
inline void expect_bit_exact(const std::string& reference_dir, const std::string& run_dir, int final_step) {
  const std::string a = step_dir(reference_dir, final_step), b = step_dir(run_dir, final_step);
  int compared = 0;
  ASSERT_TRUE(fs::exists(a)) << a;
  ASSERT_TRUE(fs::exists(b)) << b;
  for (const auto& name : fs::list_dir(a)) {
    if (name.size() < 12 || name.substr(name.size() - 12) != ".safetensors") continue;
    const std::string x = read_bytes(a + "/" + name), y = read_bytes(b + "/" + name);
    EXPECT_EQ(x.size(), y.size()) << name;
    EXPECT_TRUE(x == y) << name << " differs from the uninterrupted run's";
    ++compared;
  }
  EXPECT_GE(compared, 3) << "model, optimizer and rng files expected in " << a;
  const auto ra = read_jsonl(reference_dir + "/metrics.jsonl"), rb = read_jsonl(run_dir + "/metrics.jsonl");
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i) {
    EXPECT_EQ(ra[i]["step"], rb[i]["step"]);
    EXPECT_EQ(ra[i]["loss"].get<double>(), rb[i]["loss"].get<double>()) << "loss of step " << i;
  }
  std::printf("%s: final checkpoint (%d safetensors files) and %zu losses bit-identical to %s\n", run_dir.c_str(),
              compared, rb.size(), reference_dir.c_str());
}

}  // namespace keel::reliability
