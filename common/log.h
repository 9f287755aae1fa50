// Logging for code that includes LibTorch. On GPU nodes the PyTorch wheel puts its own (newer) fmt
// headers ahead of the system's, which breaks spdlog (built on the system fmt) in any Torch TU; so
// Torch TUs log through these plain-string functions, implemented with spdlog in a Torch-free TU,
// and format with keel::strprintf.
#pragma once

#include <string>

namespace keel::log {

void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);

}  // namespace keel::log

namespace keel {

// printf-style formatting into a std::string.
std::string strprintf(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace keel
