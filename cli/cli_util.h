// Shared helpers of the CLI commands: argument parsing with CLI11 and error-to-exit-code mapping.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace keel::cli {

// Parses `args` with `app`; returns -1 to continue, or the exit code to return (help: kExitOk, error:
// kExitConfigError; common/exit_codes.h).
int parse_args(CLI::App& app, const std::vector<std::string>& args);

// Runs `body`, mapping ConfigError to kExitConfigError and other errors to kExitError, each with a
// one-line message.
int run_guarded(const std::string& command, const std::function<int()>& body);

}  // namespace keel::cli
