// `keel-prepare`: dataset preparation as its own program (`keel prepare` forwards here). It links
// SentencePiece and never LibTorch or gRPC, whose libprotobuf clashes with SentencePiece's bundled
// protobuf-lite in one process.
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "common/crash_handler.h"

int main(int argc, char** argv) {
  spdlog::set_pattern("[%H:%M:%S] [%^%l%$] %v");
  spdlog::flush_on(spdlog::level::info);  // logs stay complete even if the process dies
  keel::install_crash_handler();
  return keel::cli::prepare_command(std::vector<std::string>(argv + 1, argv + argc));
}
