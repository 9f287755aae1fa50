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

int parse_args(CLI::App& app, const std::vector<std::string>& args) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 consumes from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": " << e.what() << "\n";
    return kExitConfigError;
  }
  return -1;
}

int run_guarded(const std::string& command, const std::function<int()>& body) {
  try {
    return body();
  } catch (const ConfigError& e) {
    std::cerr << "keel " << command << ": config error: " << e.what() << "\n";
    return kExitConfigError;
  } catch (const std::exception& e) {
    std::cerr << "keel " << command << ": error: " << e.what() << "\n";
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
