// Child processes (see process.h).
#include "common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/check.h"

namespace keel::process {
namespace {
std::vector<char*> c_args(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  return args;
}
int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}
}  // namespace

std::string self_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  KEEL_CHECK(!ec, "cannot read /proc/self/exe: " << ec.message());
  return exe.parent_path().string();
}

std::string sibling_program(const std::string& name) {
  const std::string path = self_dir() + "/" + name;
  KEEL_CHECK(::access(path.c_str(), X_OK) == 0, "program '" << path << "' is missing (is the build complete?)");
  return path;
}

int run(const std::vector<std::string>& argv) {
  KEEL_CHECK(!argv.empty(), "process::run: empty argv");
  auto args = c_args(argv);
  pid_t pid = ::fork();
  KEEL_CHECK(pid >= 0, "fork failed: " << std::strerror(errno));
  if (pid == 0) {
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    KEEL_CHECK(errno == EINTR, "waitpid failed: " << std::strerror(errno));
  }
  return exit_code_of(status);
}

void exec(const std::vector<std::string>& argv) {
  auto args = c_args(argv);
  ::execv(args[0], args.data());
  KEEL_CHECK(false, "cannot run '" << argv[0] << "': " << std::strerror(errno));
  __builtin_unreachable();
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const SpawnOptions& options)
    : own_group_(options.new_process_group) {
  KEEL_CHECK(!argv.empty(), "ChildProcess: empty argv");
  name_ = std::filesystem::path(argv[0]).filename().string();
  int pipe_fds[2] = {-1, -1};
  if (options.capture_stdout) KEEL_CHECK(::pipe(pipe_fds) == 0, "pipe failed: " << std::strerror(errno));
  // Opened here, not in the child, so a path that cannot be written is the parent's error to report.
  int stderr_fd = -1;
  if (!options.stderr_file.empty()) {
    stderr_fd = ::open(options.stderr_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    KEEL_CHECK(stderr_fd >= 0, "cannot open '" << options.stderr_file << "' for " << name_
                                               << "'s output: " << std::strerror(errno));
  }
  auto args = c_args(argv);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0 && stderr_fd >= 0) ::close(stderr_fd);
  KEEL_CHECK(pid_ >= 0, "fork failed: " << std::strerror(errno));
  if (pid_ == 0) {
    if (options.parent_death_signal != 0) {
      ::prctl(PR_SET_PDEATHSIG, options.parent_death_signal);
      if (::getppid() != parent) ::_exit(127);  // the parent already ended before prctl took effect
    }
    if (options.new_process_group) ::setpgid(0, 0);
    for (const auto& [key, value] : options.env) ::setenv(key.c_str(), value.c_str(), 1);
    if (options.capture_stdout) {
      ::dup2(pipe_fds[1], STDOUT_FILENO);
      ::close(pipe_fds[0]);
      ::close(pipe_fds[1]);
    }
    if (stderr_fd >= 0) ::dup2(stderr_fd, STDERR_FILENO);  // dup2 clears O_CLOEXEC on the copy
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  if (options.new_process_group) ::setpgid(pid_, pid_);  // also here: no race with an early signal
  if (stderr_fd >= 0) ::close(stderr_fd);
  if (options.capture_stdout) {
    ::close(pipe_fds[1]);
    stdout_fd_ = pipe_fds[0];
  }
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !exit_code_) stop(2.0);
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
}

std::optional<std::string> ChildProcess::read_line(double timeout_seconds) {
  KEEL_CHECK(stdout_fd_ >= 0, name_ << ": stdout is not captured");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  for (;;) {
    const auto newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd fd{stdout_fd_, POLLIN, 0};
    const int ready = ::poll(&fd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return std::nullopt;
    char chunk[4096];
    const ssize_t n = ::read(stdout_fd_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;  // end of output
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

std::optional<int> ChildProcess::try_wait() {
  if (exit_code_) return exit_code_;
  int status = 0;
  const pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == pid_) exit_code_ = exit_code_of(status);
  return exit_code_;
}

int ChildProcess::wait() {
  if (exit_code_) return *exit_code_;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    KEEL_CHECK(errno == EINTR, "waitpid failed: " << std::strerror(errno));
  }
  exit_code_ = exit_code_of(status);
  return *exit_code_;
}

void ChildProcess::signal(int signal_number) {
  if (exit_code_) return;
  if (own_group_) ::kill(-pid_, signal_number);
  ::kill(pid_, signal_number);
}

int ChildProcess::stop(double grace_seconds) {
  if (try_wait()) return *exit_code_;
  signal(SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (try_wait()) return *exit_code_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  signal(SIGKILL);
  return wait();
}

}  // namespace keel::process
