// llm.c-format token shards: atomic writer and mmap reader with strict validation (see token_shard.h).
#include "data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <utility>

#include "common/fs.h"

namespace keel {

// The format is little-endian and tokens() hands out the mapped bytes as uint16 directly, which
// is only correct on a little-endian host. Every platform Keel targets is one; fail loudly otherwise.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token shards assume a little-endian host");

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw DataError("shard '" + path + "': " + problem);
}

}  // namespace

void write_token_shard(const std::string& path, const std::vector<uint16_t>& tokens) {
  // Header and tokens go into one buffer so the atomic write is a single file operation.
  std::vector<uint8_t> bytes(static_cast<size_t>(kShardHeaderBytes) + tokens.size() * 2);
  int32_t header[kShardHeaderInts] = {};
  KEEL_CHECK(tokens.size() <= static_cast<size_t>(INT32_MAX),
             "shard '" << path << "': " << tokens.size() << " tokens do not fit the int32 count");
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  std::memcpy(bytes.data(), header, sizeof(header));
  if (!tokens.empty()) std::memcpy(bytes.data() + kShardHeaderBytes, tokens.data(), tokens.size() * 2);
  keel::fs::write_file_atomic(path, bytes.data(), bytes.size());
}

TokenShard::TokenShard(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    fail(path, "cannot stat: " + why);
  }
  const int64_t file_bytes = static_cast<int64_t>(info.st_size);
  if (file_bytes < kShardHeaderBytes) {
    ::close(fd);
    std::ostringstream s;
    s << "file is " << file_bytes << " bytes, shorter than the " << kShardHeaderBytes << "-byte header";
    fail(path, s.str());
  }
  void* mapping = ::mmap(nullptr, static_cast<size_t>(file_bytes), PROT_READ, MAP_PRIVATE, fd, 0);
  const int mmap_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (mapping == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(mmap_errno));
  mapping_ = mapping;
  mapping_size_ = static_cast<size_t>(file_bytes);

  // Validate before exposing anything; on failure release the mapping (the destructor does not
  // run for a constructor that throws).
  int32_t header[3];
  std::memcpy(header, mapping_, sizeof(header));
  std::ostringstream problem;
  const int64_t count = header[2];
  if (header[0] != kShardMagic) {
    problem << "bad magic " << header[0] << " (expected " << kShardMagic << ")";
  } else if (header[1] != kShardVersion) {
    problem << "bad version " << header[1] << " (expected " << kShardVersion << ")";
  } else if (count < 0) {
    problem << "negative token count " << count;
  } else if (const int64_t expected = kShardHeaderBytes + 2 * count; file_bytes < expected) {
    problem << "truncated: header says " << count << " tokens (" << expected << " bytes) but the file is " << file_bytes
            << " bytes";
  } else if (file_bytes > expected) {
    problem << "trailing bytes: header says " << count << " tokens (" << expected << " bytes) but the file is "
            << file_bytes << " bytes";
  }
  if (!problem.str().empty()) {
    release();
    fail(path, problem.str());
  }
  num_tokens_ = count;
  tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(mapping_) + kShardHeaderBytes);
  // Loaders read front to back; let the kernel read ahead.
  ::madvise(mapping_, mapping_size_, MADV_SEQUENTIAL);
}

TokenShard::~TokenShard() { release(); }

TokenShard::TokenShard(TokenShard&& other) noexcept
    : path_(std::move(other.path_)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_size_(std::exchange(other.mapping_size_, 0)),
      tokens_(std::exchange(other.tokens_, nullptr)),
      num_tokens_(std::exchange(other.num_tokens_, 0)) {}

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_size_ = std::exchange(other.mapping_size_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    num_tokens_ = std::exchange(other.num_tokens_, 0);
  }
  return *this;
}

void TokenShard::release() noexcept {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
  mapping_ = nullptr;
  mapping_size_ = 0;
  tokens_ = nullptr;
  num_tokens_ = 0;
}

uint16_t TokenShard::max_token() const {
  if (num_tokens_ == 0) return 0;
  return *std::max_element(tokens_, tokens_ + num_tokens_);
}

}  // namespace keel
