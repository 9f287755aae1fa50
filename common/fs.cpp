// Durable file-system helpers (see fs.h).
#include "common/fs.h"

#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "common/check.h"

namespace keel::fs {
namespace stdfs = std::filesystem;

namespace {
std::string errno_text() { return std::strerror(errno); }

// The text a path must contain for an injected fault (empty: none); read once.
const std::string& injection(const char* variable) {
  static std::map<std::string, std::string> cache;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(variable);
  if (it == cache.end()) {
    const char* value = std::getenv(variable);
    it = cache.emplace(variable, value ? value : "").first;
  }
  return it->second;
}
bool injected(const char* variable, const std::string& path) {
  const std::string& needle = injection(variable);
  return !needle.empty() && path.find(needle) != std::string::npos;
}
}  // namespace

DurableFile::DurableFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  KEEL_CHECK(fd_ >= 0, "cannot create '" << path_ << "': " << errno_text());
  inject_error_ = injected("KEEL_INJECT_WRITE_ERROR", path_);
  inject_crash_ = injected("KEEL_INJECT_CRASH_IN_WRITE", path_);
}

DurableFile::~DurableFile() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(path_.c_str());
}

void DurableFile::fail(const std::string& why) {
  ::close(fd_);
  fd_ = -1;
  ::unlink(path_.c_str());
  KEEL_CHECK(false, "write to '" << path_ << "' failed: " << why);
}

void DurableFile::write(const void* data, size_t size) {
  KEEL_CHECK(fd_ >= 0, "write to '" << path_ << "' after it was finished or failed");
  const char* p = static_cast<const char*>(data);
  size_t left = size;
  if (inject_error_ || inject_crash_) left = size / 2;  // half of it reaches the disk
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(errno_text());
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (inject_crash_) {
    std::fprintf(stderr, "FAULT INJECTION: killing this process in the middle of writing %s\n", path_.c_str());
    std::fflush(stderr);
    ::raise(SIGKILL);
  }
  if (inject_error_) {
    std::fprintf(stderr, "FAULT INJECTION: failing the write of %s with ENOSPC\n", path_.c_str());
    errno = ENOSPC;
    fail(errno_text() + std::string(" (injected by KEEL_INJECT_WRITE_ERROR)"));
  }
}

void DurableFile::finish() {
  KEEL_CHECK(fd_ >= 0, "finish of '" << path_ << "' after it was finished or failed");
  if (::fsync(fd_) != 0) fail("fsync: " + errno_text());
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) {
    const std::string why = errno_text();
    ::unlink(path_.c_str());
    KEEL_CHECK(false, "close of '" << path_ << "' failed: " << why);
  }
}

void write_file_durable(const std::string& path, const void* data, size_t size) {
  DurableFile file(path);
  file.write(data, size);
  file.finish();
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
