// Reading, making and storing the coordinator token (see token.h).
#include "rpc/token.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

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

std::string new_coordinator_token() {
  unsigned char bytes[32];
  size_t filled = 0;
  while (filled < sizeof(bytes)) {
    const ssize_t n = ::getrandom(bytes + filled, sizeof(bytes) - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    KEEL_CHECK(n > 0, "cannot read random bytes for the coordinator token: " << std::strerror(errno));
    filled += static_cast<size_t>(n);
  }
  static const char* const kHex = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token.push_back(kHex[b >> 4]);
    token.push_back(kHex[b & 15]);
  }
  return token;
}

void write_token_file(const std::string& path, const std::string& token) {
  KEEL_CHECK(::unlink(path.c_str()) == 0 || errno == ENOENT,
             "cannot remove the old coordinator token file '" << path << "': " << std::strerror(errno));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, S_IRUSR | S_IWUSR);
  KEEL_CHECK(fd >= 0, "cannot create the coordinator token file '" << path << "': " << std::strerror(errno));
  const std::string text = token + "\n";
  size_t written = 0;
  int error = 0;
  // A umask cannot add permissions, but make the mode exactly 0600 whatever it removed.
  if (::fchmod(fd, S_IRUSR | S_IWUSR) != 0) error = errno;
  while (error == 0 && written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n < 0 ? errno : EIO;
      break;
    }
    written += static_cast<size_t>(n);
  }
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error != 0) ::unlink(path.c_str());
  KEEL_CHECK(error == 0, "cannot write the coordinator token file '" << path << "': " << std::strerror(error));
}

}  // namespace keel::coord
