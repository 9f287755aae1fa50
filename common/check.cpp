// Error checks (see check.h).
#include "common/check.h"

#include <regex>

namespace keel {

std::string without_source_locations(const std::string& message) {
  // What throw_error writes: " (" + a source path ending in a C++/CUDA extension + ":" + line + ")".
  static const std::regex location(R"( \([^()\s]+\.(cpp|cc|cu|h|hpp):[0-9]+\))");
  return std::regex_replace(message, location, "");
}

}  // namespace keel
