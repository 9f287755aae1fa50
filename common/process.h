// Child processes: Keel's launchers start coordinator/worker/prepare programs as real processes.
// Torch-free.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace keel::process {

// The folder holding the running executable (/proc/self/exe), to find sibling programs.
std::string self_dir();

// Path of a Keel program installed beside the running one (e.g. "keel-prepare").
std::string sibling_program(const std::string& name);

// Runs argv[0] with arguments, inheriting stdio, and waits; returns its exit code
// (128 + signal when killed). Throws KeelError when it cannot be started.
int run(const std::vector<std::string>& argv);

// Replaces the current process with argv (execv); throws KeelError when that fails.
[[noreturn]] void exec(const std::vector<std::string>& argv);

// A started child process that the parent supervises (the launcher's coordinator and workers).
// The destructor stops a still-running child (SIGTERM, then SIGKILL after a grace period).
struct SpawnOptions {
  std::map<std::string, std::string> env;  // added to (or replacing in) the inherited environment
  bool capture_stdout = false;             // read it with read_line(); otherwise inherited
  // Non-empty: the child's stderr is appended to this file (created if missing) instead of
  // going to the parent's terminal, e.g. a helper's progress chatter that belongs in the run's logs.
  std::string stderr_file;
  bool new_process_group = true;           // so stop() also reaches the child's own children
  // A signal the child gets when the thread that started it ends (Linux PR_SET_PDEATHSIG), so a
  // launcher killed or stopped at once (a second Ctrl-C) leaves no coordinator or worker behind;
  // 0: none. Start such children from a thread that lives as long as the parent (the main one).
  int parent_death_signal = 0;
};

class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const SpawnOptions& options = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  // The next line of the captured stdout, waiting up to `timeout_seconds`; nullopt on timeout or
  // end of output.
  std::optional<std::string> read_line(double timeout_seconds);
  // The exit code (128 + signal when killed) once the child has ended; nullopt while it runs.
  std::optional<int> try_wait();
  int wait();
  // SIGTERM to the child (its process group when it has one), SIGKILL after `grace_seconds`;
  // returns the exit code.
  int stop(double grace_seconds = 5.0);
  void signal(int signal_number);

 private:
  pid_t pid_ = -1;
  bool own_group_ = false;
  int stdout_fd_ = -1;
  std::string buffer_;
  std::string name_;
  std::optional<int> exit_code_;
};

}  // namespace keel::process
