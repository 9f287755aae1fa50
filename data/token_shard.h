// Token shards in llm.c's `.bin` layout: what the data loader reads and `prepare` writes.
//
// Layout (little-endian): a header of 256 int32 — [0] magic 20240520, [1] version 1, [2] token
// count, the rest zero — followed by `count` uint16 token ids. Keeping llm.c's format means shards
// made by its Python scripts (FineWeb, TinyShakespeare, ...) load here unchanged, and ours there.
//
// Reading survives a file changed underneath (truncated, rewritten in place) while a run uses it.
// Opening reads only the header, so a multi-GB shard costs nothing to open and its pages stay in the
// page cache that every rank of a host shares. Everything training reads — batch windows
// (read_tokens), whole-shard scans (scan: the vocabulary check, unigram entropy, document spans) —
// goes through pread on the open descriptor, after an fstat that the file still has the size and
// modification time it was validated with. Why pread and not the memory mapping: a mapped page
// past the end of a truncated file raises SIGBUS at whatever instruction touches it, which could
// only be turned into an error by a signal handler and siglongjmp out of the read (skipping C++
// destructors, per thread, beside the crash handler and any handler LibTorch or MPI install); a
// pread past the end just returns fewer bytes, an ordinary error in any thread, and the fstat
// before it makes the message exact (the file, the size expected, the size found). The copy it
// costs is the one the loader made anyway (uint16 ids widened to int32); the mapping's zero-copy
// matters only to tools that look at a whole shard at once, which keep tokens() (a read-only
// MAP_PRIVATE view; a file truncated underneath makes it fault, so training never touches it).
// Torch-free.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/check.h"

namespace keel {

// A problem with training data (malformed shard, bad corpus, unusable cursor). A KeelError, so
// callers that only know KeelError still catch it.
class DataError : public keel::KeelError {
 public:
  using keel::KeelError::KeelError;
};

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;
inline constexpr int64_t kShardHeaderInts = 256;
inline constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;

// Writes `tokens` as a shard at `path` atomically (tmp + fsync + rename), so a reader never sees a
// half-written shard under the final name.
void write_token_shard(const std::string& path, const std::vector<uint16_t>& tokens);

// A validated, read-only shard: an open descriptor and a memory mapping. Move-only: it owns both.
class TokenShard {
 public:
  // Opens, maps and validates `path`; throws DataError naming the file and the exact problem (too
  // short for the header, bad magic, bad version, negative count, truncated or trailing bytes).
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  int64_t num_tokens() const { return num_tokens_; }
  const std::string& path() const { return path_; }

  // Copies tokens [first, first + count) into `out` with pread. Throws DataError naming the file
  // when the window is outside the shard, or when the file no longer has the size (or modification
  // time) it had when opened: truncated, grown or rewritten underneath, with both sizes.
  void read_tokens(int64_t first, int64_t count, uint16_t* out) const;
  // Calls `chunk(tokens, n)` on consecutive pieces of [first, first + count), in order, each read
  // with read_tokens (at most 1 Mi tokens at a time). The same errors as read_tokens.
  void scan(int64_t first, int64_t count, const std::function<void(const uint16_t*, int64_t)>& chunk) const;
  // Throws DataError (as read_tokens) unless the file still has the size and modification time it
  // was validated with.
  void check_unchanged() const;

  // The tokens as a read-only view of the mapping, valid while this shard lives; for tools that
  // look at a whole shard. Unguarded: a file truncated underneath makes a read of it raise SIGBUS
  // (the crash handler's backtrace), which is why training reads with read_tokens and scan.
  const uint16_t* tokens() const { return tokens_; }
  // Largest token id in the shard (a full scan; used to check shards against a vocabulary). 0 for
  // an empty shard.
  uint16_t max_token() const;

 private:
  void release() noexcept;
  // Throws DataError naming the file unless [first, first + count) lies inside the shard.
  void check_window(int64_t first, int64_t count) const;

  std::string path_;
  int fd_ = -1;
  int64_t file_bytes_ = 0;       // size at open (= header + 2 * num_tokens_)
  int64_t mtime_seconds_ = 0;    // modification time at open
  int64_t mtime_nanoseconds_ = 0;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  const uint16_t* tokens_ = nullptr;
  int64_t num_tokens_ = 0;
};

}  // namespace keel
