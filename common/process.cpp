// Child processes (see process.h).
#include "common/process.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/check.h"

namespace keel::process {
namespace {
std::vector<char*> c_args(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  return args;
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
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

void exec(const std::vector<std::string>& argv) {
  auto args = c_args(argv);
  ::execv(args[0], args.data());
  KEEL_CHECK(false, "cannot run '" << argv[0] << "': " << std::strerror(errno));
  __builtin_unreachable();
}

}  // namespace keel::process
