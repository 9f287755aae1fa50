// Shared helpers of the CLI commands: argument parsing with CLI11 and error-to-exit-code mapping.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace keel::cli {

// Parses `args` with `app`; returns -1 to continue, or the exit code to return (help: kExitOk, error:
// kExitConfigError; common/exit_codes.h). Errors are CLI11's own words, arguments in the order typed.
int parse_args(CLI::App& app, const std::vector<std::string>& args);

// `keel --debug ...`: errors keep the source file and line where they were raised.
void set_debug(bool debug);
bool debug();
// What the user is told of `e`: its message, without source locations unless --debug.
std::string user_message(const std::exception& e);

// Runs `body`, mapping ConfigError to kExitConfigError and other errors to kExitError, each with a
// one-line message (user_message).
int run_guarded(const std::string& command, const std::function<int()>& body);

}  // namespace keel::cli
