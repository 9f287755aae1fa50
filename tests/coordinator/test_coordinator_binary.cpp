// The real keel-coordinator program as a child process, driven the way a launcher drives it: read
// "listening on HOST:PORT" from its stdout, let workers register and shut down, check the exit code.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "coordinator/coordinator_client.h"
#include "tests/coordinator/test_util.h"

namespace keel::coord {
namespace {

// A child keel-coordinator with its stdout on a pipe; killed if the test ends early.
class CoordinatorProcess {
 public:
  explicit CoordinatorProcess(std::vector<std::string> args) {
    args.insert(args.begin(), KEEL_COORDINATOR_BIN);
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fds[0];
  }
  ~CoordinatorProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(out_);
  }

  // The first line of stdout, or "" if none came within `timeout`.
  std::string first_line(std::chrono::milliseconds timeout) {
    std::string line;
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (line.find('\n') == std::string::npos) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      pollfd p{out_, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
      char buf[256];
      const ssize_t n = read(out_, buf, sizeof(buf));
      if (n <= 0) return "";
      line.append(buf, n);
    }
    return line.substr(0, line.find('\n'));
  }

  // The exit code (128 + signal if killed), or -1 if it did not exit within `timeout`.
  int wait_exit(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      usleep(20 * 1000);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

std::string address_from(const std::string& line) {
  const std::string prefix = "listening on ";
  return line.rfind(prefix, 0) == 0 ? line.substr(prefix.size()) : "";
}

TEST(CoordinatorBinary, OneWorkerRegistersShutsDownAndCoordinatorExitsZero) {
  testing::TempDir state;
  CoordinatorProcess proc({"--world-size", "1", "--job-id", "bin", "--state-dir", state.path()});
  const std::string address = address_from(proc.first_line(std::chrono::seconds(30)));
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
  CoordinatorProcess proc({"--world-size", "1", "--linger", "0", "--token-file", token_file});
  const std::string address = address_from(proc.first_line(std::chrono::seconds(30)));
  ASSERT_FALSE(address.empty());
  {
    CoordinatorClient client(address, "t0k");
    client.register_worker({});
    client.shutdown("diverged", 3);
  }
  EXPECT_EQ(proc.wait_exit(std::chrono::seconds(30)), 1);
}

TEST(CoordinatorBinary, BadLayoutIsRefused) {
  CoordinatorProcess proc({"--world-size", "4", "--dp", "3", "--tp", "2"});
  EXPECT_EQ(proc.wait_exit(std::chrono::seconds(30)), 1);
  CoordinatorProcess usage({"--dp", "1"});  // --world-size missing
  EXPECT_EQ(usage.wait_exit(std::chrono::seconds(30)), 2);
}

}  // namespace
}  // namespace keel::coord
