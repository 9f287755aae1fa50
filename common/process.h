// Child processes: Keel's launchers start coordinator/worker/prepare programs as real processes.
// Torch-free.
#pragma once

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

}  // namespace keel::process
