// A program run on a pseudo-terminal, for tests of what a user at a terminal sees and does: its
// output as the terminal shows it, and keys typed into it (Ctrl-C is "\x03": the terminal driver
// sends SIGINT to the foreground process group, exactly as for a user; no kill() of a chosen pid).
#pragma once

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <dirent.h>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace keel::testing_util {

class PtyProcess {
 public:
  explicit PtyProcess(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::forkpty(&master_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~PtyProcess() {
    if (pid_ > 0 && !exit_code_) {
      ::kill(pid_, SIGKILL);
      wait(5.0);
    }
    if (master_ >= 0) ::close(master_);
  }
  PtyProcess(const PtyProcess&) = delete;
  PtyProcess& operator=(const PtyProcess&) = delete;

  bool started() const { return pid_ > 0 && master_ >= 0; }
  const std::string& output() const { return output_; }

  // Reads until the output (all of it so far) contains `text`; false on timeout or end of output.
  bool read_until(const std::string& text, double timeout_seconds) {
    const auto deadline = now() + std::chrono::duration<double>(timeout_seconds);
    while (output_.find(text) == std::string::npos) {
      if (now() > deadline || read_some(0.2) == Read::kEnd) return output_.find(text) != std::string::npos;
    }
    return true;
  }

  void type(const std::string& keys) { [[maybe_unused]] auto n = ::write(master_, keys.data(), keys.size()); }

  // Reads the rest of the output and waits for the exit code (128 + N when killed by signal N);
  // -1 when it did not end within `timeout_seconds`.
  int wait(double timeout_seconds) {
    const auto deadline = now() + std::chrono::duration<double>(timeout_seconds);
    while (now() < deadline) {
      read_some(0.05);
      int status = 0;
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        while (read_some(0.05) == Read::kData) {
        }
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return *exit_code_;
      }
    }
    return -1;
  }

 private:
  static std::chrono::steady_clock::time_point now() { return std::chrono::steady_clock::now(); }

  enum class Read { kData, kNothingYet, kEnd };
  // One chunk of output; kEnd at its end (EIO once the terminal has no process left).
  Read read_some(double timeout_seconds) {
    pollfd fd{master_, POLLIN, 0};
    const int ready = ::poll(&fd, 1, static_cast<int>(timeout_seconds * 1000));
    if (ready == 0 || (ready < 0 && errno == EINTR)) return Read::kNothingYet;
    if (ready < 0) return Read::kEnd;
    char chunk[4096];
    const ssize_t n = ::read(master_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) return Read::kNothingYet;
    if (n <= 0) return Read::kEnd;
    output_.append(chunk, static_cast<size_t>(n));
    return Read::kData;
  }

  pid_t pid_ = -1;
  int master_ = -1;
  std::string output_;
  std::optional<int> exit_code_;
};

// The processes whose command line mentions `text` (e.g. a run directory that a coordinator or
// worker was given), this process and its test harness aside.
inline std::vector<int> processes_mentioning(const std::string& text) {
  std::vector<int> pids;
  DIR* proc = ::opendir("/proc");
  if (!proc) return pids;
  while (dirent* entry = ::readdir(proc)) {
    const int pid = std::atoi(entry->d_name);
    if (pid <= 0 || pid == ::getpid()) continue;
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    if (s.str().find(text) != std::string::npos) pids.push_back(pid);
  }
  ::closedir(proc);
  return pids;
}

// Waits up to `timeout_seconds` for processes_mentioning(text) to be empty; returns what is left.
inline std::vector<int> wait_until_gone(const std::string& text, double timeout_seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  auto left = processes_mentioning(text);
  while (!left.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    left = processes_mentioning(text);
  }
  return left;
}

}  // namespace keel::testing_util
