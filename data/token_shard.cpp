// llm.c-format token shards: atomic writer, and a reader that validates at open and checks the
// file is unchanged before every read (see token_shard.h for why reads use pread, not the mapping).
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

// The format is little-endian and the reader hands out the file's bytes as uint16 directly, which
// is only correct on a little-endian host. Every platform Keel targets is one; fail loudly otherwise.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token shards assume a little-endian host");

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw DataError("shard '" + path + "': " + problem);
}

// Tokens per pread of scan(): 2 MiB, big enough to stream, small enough to stay in cache.
constexpr int64_t kScanChunkTokens = int64_t{1} << 20;

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
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  // From here a failure must release what was acquired (no destructor runs for a throwing
  // constructor).
  auto give_up = [this](const std::string& problem) {
    release();
    fail(path_, problem);
  };
  struct stat info {};
  if (::fstat(fd_, &info) != 0) give_up(std::string("cannot stat: ") + std::strerror(errno));
  const int64_t file_bytes = static_cast<int64_t>(info.st_size);
  if (file_bytes < kShardHeaderBytes) {
    std::ostringstream s;
    s << "file is " << file_bytes << " bytes, shorter than the " << kShardHeaderBytes << "-byte header";
    give_up(s.str());
  }
  file_bytes_ = file_bytes;
  mtime_seconds_ = static_cast<int64_t>(info.st_mtim.tv_sec);
  mtime_nanoseconds_ = static_cast<int64_t>(info.st_mtim.tv_nsec);

  // The header through pread too: the file may shrink between the fstat and this read.
  int32_t header[3];
  const ssize_t got = ::pread(fd_, header, sizeof(header), 0);
  if (got != static_cast<ssize_t>(sizeof(header))) {
    give_up(got < 0 ? std::string("cannot read the header: ") + std::strerror(errno)
                    : "cannot read the header: the file shrank while it was opened");
  }
  std::ostringstream problem;
  const int64_t count = header[2];
  if (header[0] != kShardMagic) {
    problem << "bad magic " << header[0] << " (expected " << kShardMagic << ")";
  } else if (header[1] == 2) {
    // llm.c writes version 2 for LLaMA-3's 128k vocabulary: uint32 ids, which neither of Keel's
    // tokenizers (SentencePiece up to 65536 pieces, GPT-2's 50257) can have made.
    problem << "version 2 (uint32 token ids: llm.c's LLaMA-3 shards) is not supported; Keel reads version "
            << kShardVersion << " (uint16 ids: GPT-2's tokenizer, as llm.c's GPT-2 shards, or SentencePiece)";
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
  if (!problem.str().empty()) give_up(problem.str());

  void* mapping = ::mmap(nullptr, static_cast<size_t>(file_bytes), PROT_READ, MAP_PRIVATE, fd_, 0);
  if (mapping == MAP_FAILED) give_up(std::string("mmap failed: ") + std::strerror(errno));
  mapping_ = mapping;
  mapping_size_ = static_cast<size_t>(file_bytes);
  num_tokens_ = count;
  tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(mapping_) + kShardHeaderBytes);
  // Loaders read front to back; let the kernel read ahead.
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
}

TokenShard::~TokenShard() { release(); }

TokenShard::TokenShard(TokenShard&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      file_bytes_(std::exchange(other.file_bytes_, 0)),
      mtime_seconds_(std::exchange(other.mtime_seconds_, 0)),
      mtime_nanoseconds_(std::exchange(other.mtime_nanoseconds_, 0)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_size_(std::exchange(other.mapping_size_, 0)),
      tokens_(std::exchange(other.tokens_, nullptr)),
      num_tokens_(std::exchange(other.num_tokens_, 0)) {}

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    file_bytes_ = std::exchange(other.file_bytes_, 0);
    mtime_seconds_ = std::exchange(other.mtime_seconds_, 0);
    mtime_nanoseconds_ = std::exchange(other.mtime_nanoseconds_, 0);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_size_ = std::exchange(other.mapping_size_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    num_tokens_ = std::exchange(other.num_tokens_, 0);
  }
  return *this;
}

void TokenShard::release() noexcept {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  mapping_ = nullptr;
  mapping_size_ = 0;
  tokens_ = nullptr;
  num_tokens_ = 0;
}

void TokenShard::check_unchanged() const {
  if (fd_ < 0) fail(path_, "read from a moved-from or closed shard");
  struct stat info {};
  if (::fstat(fd_, &info) != 0) fail(path_, std::string("cannot stat while reading: ") + std::strerror(errno));
  const int64_t now_bytes = static_cast<int64_t>(info.st_size);
  if (now_bytes != file_bytes_) {
    std::ostringstream s;
    s << "the file changed on disk while in use: it was " << file_bytes_ << " bytes (" << num_tokens_
      << " tokens) when opened and is now " << now_bytes << " bytes ("
      << (now_bytes < file_bytes_ ? "truncated" : "grown") << "); restore the shard or restart the run on a stable copy";
    fail(path_, s.str());
  }
  if (static_cast<int64_t>(info.st_mtim.tv_sec) != mtime_seconds_ ||
      static_cast<int64_t>(info.st_mtim.tv_nsec) != mtime_nanoseconds_) {
    std::ostringstream s;
    s << "the file changed on disk while in use: same size (" << file_bytes_
      << " bytes) but rewritten (its modification time changed); restore the shard or restart the run on a stable copy";
    fail(path_, s.str());
  }
}

void TokenShard::check_window(int64_t first, int64_t count) const {
  if (first < 0 || count < 0 || first > num_tokens_ || count > num_tokens_ - first) {
    std::ostringstream s;
    s << "window [" << first << ", " << first << "+" << count << ") is not inside its " << num_tokens_ << " tokens";
    fail(path_, s.str());
  }
}

void TokenShard::read_tokens(int64_t first, int64_t count, uint16_t* out) const {
  check_window(first, count);
  check_unchanged();
  auto* bytes = reinterpret_cast<char*>(out);
  int64_t done = 0;
  const int64_t wanted = 2 * count;
  const int64_t offset = kShardHeaderBytes + 2 * first;
  while (done < wanted) {
    const ssize_t n = ::pread(fd_, bytes + done, static_cast<size_t>(wanted - done), static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(path_, std::string("read failed: ") + std::strerror(errno));
    if (n == 0) {
      // The file shrank between the fstat and the read: say what it is now.
      struct stat info {};
      const int64_t now_bytes = ::fstat(fd_, &info) == 0 ? static_cast<int64_t>(info.st_size) : -1;
      std::ostringstream s;
      s << "the file changed on disk while in use: it was " << file_bytes_ << " bytes (" << num_tokens_
        << " tokens) when opened and is now " << now_bytes << " bytes (truncated: reading byte " << offset + done
        << " found its end); restore the shard or restart the run on a stable copy";
      fail(path_, s.str());
    }
    done += n;
  }
}

void TokenShard::scan(int64_t first, int64_t count,
                      const std::function<void(const uint16_t*, int64_t)>& chunk) const {
  check_window(first, count);
  check_unchanged();  // also when there is nothing to read
  std::vector<uint16_t> buffer(static_cast<size_t>(std::min(count, kScanChunkTokens)));
  int64_t at = first;
  const int64_t end = first + count;
  while (at < end) {
    const int64_t n = std::min(kScanChunkTokens, end - at);
    read_tokens(at, n, buffer.data());
    chunk(buffer.data(), n);
    at += n;
  }
}

uint16_t TokenShard::max_token() const {
  uint16_t max_id = 0;
  scan(0, num_tokens_, [&max_id](const uint16_t* tokens, int64_t n) {
    max_id = std::max(max_id, *std::max_element(tokens, tokens + n));
  });
  return max_id;
}

}  // namespace keel
