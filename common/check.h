// Error checks that carry context. Library code throws; only mains turn errors into exit codes.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace keel {

// A failed internal check or a bad input, with the file and line where it was caught.
class KeelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_error(const char* file, int line, const std::string& message) {
  std::ostringstream s;
  s << message << " (" << file << ":" << line << ")";
  throw KeelError(s.str());
}

// `message` without the " (FILE:LINE)" locations that throw_error appends (a message may hold
// several, when one error wraps another): what a user reads, unless they asked for --debug.
std::string without_source_locations(const std::string& message);

}  // namespace keel

// KEEL_CHECK(cond, "message " << value): throws KeelError with the message, file and line.
#define KEEL_CHECK(cond, msg)                                          \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::ostringstream keel_check_stream_;                           \
      keel_check_stream_ << msg;                                       \
      ::keel::throw_error(__FILE__, __LINE__, keel_check_stream_.str()); \
    }                                                                  \
  } while (0)
