// CLI helpers (see cli_util.h).
#include "cli/cli_util.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>

#include "common/check.h"
#include "common/config.h"
#include "common/exit_codes.h"
#include "common/process.h"
#include "cli/commands.h"

namespace keel::cli {

namespace {
bool g_debug = false;
}  // namespace

void set_debug(bool debug) { g_debug = debug; }
bool debug() { return g_debug; }

std::string user_message(const std::exception& e) {
  return g_debug ? std::string(e.what()) : without_source_locations(e.what());
}

int parse_args(CLI::App& app, const std::vector<std::string>& args) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 consumes from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    return kExitOk;
  } catch (const CLI::ExtrasError& e) {
    // CLI11 2.1 lists the extras of this vector form last-typed first; remaining() has them in order.
    std::string extras;
    for (const auto& arg : app.remaining()) extras += (extras.empty() ? "" : " ") + arg;
    std::cerr << app.get_name() << ": " << (app.remaining().size() > 1 ? "The following arguments were not expected: "
                                                                       : "The following argument was not expected: ")
              << extras << "\nRun with --help for the options.\n";
    return kExitConfigError;
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": " << e.what() << "\nRun with --help for the options.\n";
    return kExitConfigError;
  }
  return -1;
}

int run_guarded(const std::string& command, const std::function<int()>& body) {
  try {
    return body();
  } catch (const ConfigError& e) {
    std::cerr << "keel " << command << ": config error: " << user_message(e) << "\n";
    return kExitConfigError;
  } catch (const std::exception& e) {
    std::cerr << "keel " << command << ": error: " << user_message(e) << "\n";
    return kExitError;
  }
}

int forward_to_prepare(const std::vector<std::string>& args) {
  return run_guarded("prepare", [&]() -> int {
    std::vector<std::string> argv = {process::sibling_program("keel-prepare")};
    argv.insert(argv.end(), args.begin(), args.end());
    process::exec(argv);
  });
}

}  // namespace keel::cli
