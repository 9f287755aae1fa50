// Reading the coordinator token (see token.h).
#include "rpc/token.h"

#include <cstdlib>

#include "common/check.h"
#include "common/fs.h"

namespace keel::coord {

std::string resolve_coordinator_token(const std::string& token_file) {
  std::string token;
  if (!token_file.empty()) {
    KEEL_CHECK(fs::exists(token_file), "coordinator token file '" << token_file << "' does not exist");
    token = fs::read_file(token_file);
    const auto end = token.find_last_not_of(" \t\r\n");
    token = end == std::string::npos ? "" : token.substr(0, end + 1);
    KEEL_CHECK(!token.empty(), "coordinator token file '" << token_file << "' is empty");
  } else if (const char* env = std::getenv(kTokenEnvironmentVariable)) {
    token = env;
  }
  // The token travels in an HTTP/2 header: printable ASCII only (and never logged).
  for (unsigned char c : token)
    KEEL_CHECK(c > 0x20 && c < 0x7f, "the coordinator token must be printable ASCII without spaces");
  return token;
}

}  // namespace keel::coord
