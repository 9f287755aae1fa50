// Durable file-system helpers (see fs.h).
#include "common/fs.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/check.h"

namespace keel::fs {
namespace stdfs = std::filesystem;

namespace {
std::string errno_text() { return std::strerror(errno); }

void write_all(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string why = errno_text();
      ::close(fd);
      KEEL_CHECK(false, "write to '" << path << "' failed: " << why);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}
}  // namespace

void write_file_durable(const std::string& path, const void* data, size_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  KEEL_CHECK(fd >= 0, "cannot create '" << path << "': " << errno_text());
  write_all(fd, data, size, path);
  if (::fsync(fd) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    KEEL_CHECK(false, "fsync of '" << path << "' failed: " << why);
  }
  KEEL_CHECK(::close(fd) == 0, "close of '" << path << "' failed: " << errno_text());
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    write_file_durable(tmp, data, size);
    rename_durable(tmp, path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KEEL_CHECK(in.good(), "cannot read '" << path << "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  KEEL_CHECK(fd >= 0, "cannot open '" << path << "' to fsync: " << errno_text());
  int rc = ::fsync(fd);
  ::close(fd);
  KEEL_CHECK(rc == 0, "fsync of '" << path << "' failed: " << errno_text());
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  stdfs::create_directories(path, ec);
  KEEL_CHECK(!ec, "cannot create folder '" << path << "': " << ec.message());
}

bool exists(const std::string& path) { return stdfs::exists(path); }

uint64_t file_size(const std::string& path) {
  std::error_code ec;
  auto size = stdfs::file_size(path, ec);
  KEEL_CHECK(!ec, "cannot stat '" << path << "': " << ec.message());
  return size;
}

namespace {
int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }
}  // namespace

// Not std::filesystem::remove_all: the PyTorch wheel's libtorch.so exports its own copy of that
// symbol, which interposes libstdc++'s and jumps to a null pointer (seen on the GPU nodes).
void remove_all(const std::string& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    KEEL_CHECK(errno == ENOENT, "cannot remove '" << path << "': " << errno_text());
    return;
  }
  if (!S_ISDIR(info.st_mode)) {
    KEEL_CHECK(::unlink(path.c_str()) == 0, "cannot remove '" << path << "': " << errno_text());
    return;
  }
  // Depth-first, without following symbolic links.
  KEEL_CHECK(::nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS) == 0,
             "cannot remove '" << path << "': " << errno_text());
}

void rename_durable(const std::string& from, const std::string& to) {
  KEEL_CHECK(::rename(from.c_str(), to.c_str()) == 0,
             "rename '" << from << "' -> '" << to << "' failed: " << errno_text());
  std::string parent = stdfs::path(to).parent_path().string();
  fsync_path(parent.empty() ? "." : parent);
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(path, ec)) names.push_back(entry.path().filename().string());
  KEEL_CHECK(!ec, "cannot list '" << path << "': " << ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

uint32_t crc32(const void* data, size_t size, uint32_t seed) {
  return static_cast<uint32_t>(::crc32_z(seed, static_cast<const Bytef*>(data), size));
}

uint32_t crc32_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KEEL_CHECK(in.good(), "cannot read '" << path << "'");
  std::vector<char> buffer(1 << 20);
  uint32_t crc = 0;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    crc = crc32(buffer.data(), static_cast<size_t>(in.gcount()), crc);
  }
  return crc;
}

}  // namespace keel::fs
