// Token shards in llm.c's `.bin` layout: what the data loader reads and `prepare` writes.
//
// Layout (little-endian): a header of 256 int32 — [0] magic 20240520, [1] version 1, [2] token
// count, the rest zero — followed by `count` uint16 token ids. Keeping llm.c's format means shards
// made by its Python scripts (FineWeb, TinyShakespeare, ...) load here unchanged, and ours there.
// Shards are opened read-only with mmap: a multi-GB shard costs no copy and no startup time, and
// pages are shared between ranks on one host. Torch-free.
#pragma once

#include <cstdint>
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

// A validated, memory-mapped, read-only shard. Move-only: it owns the mapping.
class TokenShard {
 public:
  // Maps and validates `path`; throws DataError naming the file and the exact problem (too short
  // for the header, bad magic, bad version, negative count, truncated or trailing bytes).
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  int64_t num_tokens() const { return num_tokens_; }
  // Points into the mapping; valid while this shard lives.
  const uint16_t* tokens() const { return tokens_; }
  const std::string& path() const { return path_; }
  // Largest token id in the shard (a full scan; used to check shards against a vocabulary). 0 for
  // an empty shard.
  uint16_t max_token() const;

 private:
  void release() noexcept;

  std::string path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  const uint16_t* tokens_ = nullptr;
  int64_t num_tokens_ = 0;
};

}  // namespace keel
