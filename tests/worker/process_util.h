// Helpers for end-to-end tests that run the real `keel` binary as a child process.
#pragma once

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace keel::testing_util {

struct ProcessResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline ProcessResult run_process(const std::string& command) {
  ProcessResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

inline std::string keel_binary() { return std::string(KEEL_BINARY_DIR) + "/cli/keel"; }
inline std::string test_dataset() { return std::string(KEEL_BINARY_DIR) + "/testdata/embedded"; }
inline std::string tiny_config() { return std::string(KEEL_SOURCE_DIR) + "/tests/worker/tiny.yaml"; }

// `keel train tiny.yaml --run-dir DIR --set data.dir=<fixture> <extra>`
inline ProcessResult keel_train(const std::string& run_dir, const std::string& extra) {
  return run_process(keel_binary() + " train " + tiny_config() + " --run-dir " + run_dir +
                     " --set data.dir=" + test_dataset() + " " + extra);
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) records.push_back(nlohmann::json::parse(line));
  return records;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs a shell command whose outcome the next assertion checks.
inline void shell(const std::string& command) {
  if (std::system(command.c_str()) != 0) std::fprintf(stderr, "command failed: %s\n", command.c_str());
}

inline std::string fresh_dir(const std::string& name) {
  std::string dir = std::string(KEEL_BINARY_DIR) + "/test-runs/" + name;
  shell("rm -rf '" + dir + "' '" + dir + "-remedy' && mkdir -p '" + std::string(KEEL_BINARY_DIR) + "/test-runs'");
  return dir;
}

}  // namespace keel::testing_util
