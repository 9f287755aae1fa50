// The temporary files that let `prepare` (data/prepare.h) build a dataset larger than memory:
// documents and their token ids go to disk as they are produced, and the shards are written from
// there in the shuffled order. What stays in memory is one encoding chunk of documents, a token
// count per document and the shuffle order. Internal to prepare.cpp and its tests. Torch-free.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace keel::prepare_stream {

// Documents appended once, in order, and read back in order ([uint64 size][bytes] records). Keeps
// the inputs' fingerprint as they arrive: a CRC-32 over every document's size and bytes, so any
// change to any document (or moving text between documents) changes it.
class DocumentSpill {
 public:
  explicit DocumentSpill(std::string path);  // creates or truncates the file
  ~DocumentSpill();                          // removes it
  DocumentSpill(const DocumentSpill&) = delete;
  DocumentSpill& operator=(const DocumentSpill&) = delete;

  void add(const std::string& document);
  // Calls `chunk` with consecutive runs of documents, in order, each run holding at most
  // `max_bytes` of text (at least one document). Flushes what was added first.
  void for_each_chunk(size_t max_bytes, const std::function<void(std::vector<std::string>&)>& chunk);
  // Empties the file and the counts (the one-document case is rewritten as its lines).
  void reset();

  int64_t count() const { return count_; }
  int64_t bytes() const { return bytes_; }
  // "crc32:xxxxxxxx bytes:N documents:M": what meta.json's "inputs" records.
  std::string fingerprint() const;

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  int64_t count_ = 0;
  int64_t bytes_ = 0;
  uint32_t crc_ = 0;
};

// Every document's token ids, appended in document order (uint16, no EOS), then read back by
// document index in any order.
class TokenSpill {
 public:
  explicit TokenSpill(std::string path);
  ~TokenSpill();
  TokenSpill(const TokenSpill&) = delete;
  TokenSpill& operator=(const TokenSpill&) = delete;

  void append(const std::vector<int>& ids);  // ids < 65536 (the caller checked the vocabulary)
  void finish();                             // flush; reads may follow
  int64_t documents() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  int64_t tokens(int64_t document) const { return offsets_[document + 1] - offsets_[document]; }
  int64_t total_tokens() const { return offsets_.back(); }
  void read(int64_t document, std::vector<uint16_t>& out) const;

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  std::vector<int64_t> offsets_{0};
  std::vector<uint16_t> buffer_;
};

// Writes `total_tokens` tokens as `split`_000.bin, `split`_001.bin, ... in out_dir: ceil(total /
// shard_tokens) shards (at least one) of near-equal size, the first total % count one token
// longer, so there is no tiny tail shard a loader could not read a batch from. Each shard is
// written under a temporary name and renamed when complete.
class ShardSetWriter {
 public:
  ShardSetWriter(std::string out_dir, std::string split, int64_t total_tokens, int64_t shard_tokens);
  ~ShardSetWriter();
  ShardSetWriter(const ShardSetWriter&) = delete;
  ShardSetWriter& operator=(const ShardSetWriter&) = delete;

  void append(const uint16_t* tokens, int64_t count);
  // Closes the last shard (all total_tokens must have been appended) and returns meta.json's
  // entries: {"file": name, "tokens": count} per shard.
  std::vector<nlohmann::json> finish();

 private:
  void open_next();
  void close_current();

  std::string out_dir_, split_;
  std::vector<int64_t> sizes_;
  size_t index_ = 0;        // shard being written
  int64_t left_ = 0;        // tokens still to write into it
  std::FILE* file_ = nullptr;
  std::string temp_path_;
  std::vector<nlohmann::json> written_;
};

// Logs "what: N documents, M MB, T tokens (X tokens/s)" at most every `interval_seconds`.
class ProgressLog {
 public:
  explicit ProgressLog(std::string what, double interval_seconds = 5.0);
  void update(int64_t documents, int64_t bytes, int64_t tokens, bool force = false);

 private:
  std::string what_;
  double interval_;
  double start_, last_;
};

}  // namespace keel::prepare_stream
