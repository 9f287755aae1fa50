// Spill files, the streaming shard writer and progress lines of `prepare` (see prepare_stream.h).
#include "data/prepare_stream.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>

#include "common/fs.h"
#include "data/dataset_meta.h"
#include "data/token_shard.h"

namespace keel::prepare_stream {

namespace {

std::FILE* open_or_throw(const std::string& path, const char* mode) {
  std::FILE* file = std::fopen(path.c_str(), mode);
  if (file == nullptr) throw DataError("prepare: cannot open temporary file '" + path + "': " + std::strerror(errno));
  return file;
}

void write_or_throw(std::FILE* file, const void* data, size_t size, const std::string& path) {
  if (size > 0 && std::fwrite(data, 1, size, file) != size) {
    throw DataError("prepare: writing temporary file '" + path + "' failed: " + std::strerror(errno));
  }
}

void read_or_throw(std::FILE* file, void* data, size_t size, const std::string& path) {
  if (size > 0 && std::fread(data, 1, size, file) != size) {
    throw DataError("prepare: temporary file '" + path + "' ended early (changed while prepare ran?)");
  }
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

DocumentSpill::DocumentSpill(std::string path) : path_(std::move(path)) { file_ = open_or_throw(path_, "w+b"); }

DocumentSpill::~DocumentSpill() {
  if (file_ != nullptr) std::fclose(file_);
  std::remove(path_.c_str());
}

void DocumentSpill::add(const std::string& document) {
  const uint64_t size = document.size();  // delimits documents, so moving text between them counts
  crc_ = keel::fs::crc32(&size, sizeof(size), crc_);
  crc_ = keel::fs::crc32(document.data(), document.size(), crc_);
  write_or_throw(file_, &size, sizeof(size), path_);
  write_or_throw(file_, document.data(), document.size(), path_);
  ++count_;
  bytes_ += static_cast<int64_t>(size);
}

void DocumentSpill::for_each_chunk(size_t max_bytes, const std::function<void(std::vector<std::string>&)>& chunk) {
  if (std::fflush(file_) != 0 || std::fseek(file_, 0, SEEK_SET) != 0) {
    throw DataError("prepare: cannot rewind temporary file '" + path_ + "'");
  }
  std::vector<std::string> documents;
  size_t held = 0;
  for (int64_t i = 0; i < count_; ++i) {
    uint64_t size = 0;
    read_or_throw(file_, &size, sizeof(size), path_);
    std::string document(size, '\0');
    read_or_throw(file_, document.data(), size, path_);
    if (!documents.empty() && held + size > max_bytes) {
      chunk(documents);
      documents.clear();
      held = 0;
    }
    held += size;
    documents.push_back(std::move(document));
  }
  if (!documents.empty()) chunk(documents);
  if (std::fseek(file_, 0, SEEK_END) != 0) throw DataError("prepare: cannot seek temporary file '" + path_ + "'");
}

void DocumentSpill::reset() {
  std::fclose(file_);
  file_ = open_or_throw(path_, "w+b");
  count_ = 0;
  bytes_ = 0;
  crc_ = 0;
}

std::string DocumentSpill::fingerprint() const {
  char hex[9];
  std::snprintf(hex, sizeof(hex), "%08x", crc_);
  return "crc32:" + std::string(hex) + " bytes:" + std::to_string(bytes_) + " documents:" + std::to_string(count_);
}

TokenSpill::TokenSpill(std::string path) : path_(std::move(path)) { file_ = open_or_throw(path_, "w+b"); }

TokenSpill::~TokenSpill() {
  if (file_ != nullptr) std::fclose(file_);
  std::remove(path_.c_str());
}

void TokenSpill::append(const std::vector<int>& ids) {
  buffer_.assign(ids.begin(), ids.end());
  write_or_throw(file_, buffer_.data(), buffer_.size() * sizeof(uint16_t), path_);
  offsets_.push_back(offsets_.back() + static_cast<int64_t>(ids.size()));
}

void TokenSpill::finish() {
  if (std::fflush(file_) != 0) throw DataError("prepare: writing temporary file '" + path_ + "' failed");
}

void TokenSpill::read(int64_t document, std::vector<uint16_t>& out) const {
  out.resize(static_cast<size_t>(tokens(document)));
  if (out.empty()) return;
  if (std::fseek(file_, static_cast<long>(offsets_[document] * 2), SEEK_SET) != 0) {
    throw DataError("prepare: cannot seek temporary file '" + path_ + "'");
  }
  read_or_throw(file_, out.data(), out.size() * sizeof(uint16_t), path_);
}

ShardSetWriter::ShardSetWriter(std::string out_dir, std::string split, int64_t total_tokens, int64_t shard_tokens)
    : out_dir_(std::move(out_dir)), split_(std::move(split)) {
  const int64_t count = std::max<int64_t>(1, (total_tokens + shard_tokens - 1) / shard_tokens);
  for (int64_t i = 0; i < count; ++i) sizes_.push_back(total_tokens / count + (i < total_tokens % count ? 1 : 0));
  KEEL_CHECK(sizes_.front() <= INT32_MAX, "shard of " << sizes_.front() << " tokens does not fit the int32 count");
  open_next();
}

ShardSetWriter::~ShardSetWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(temp_path_.c_str());
  }
}

void ShardSetWriter::open_next() {
  char name[64];
  std::snprintf(name, sizeof(name), "%s_%03zu.bin", split_.c_str(), index_);
  temp_path_ = dataset_file(out_dir_, std::string(name) + ".partial");
  file_ = open_or_throw(temp_path_, "wb");
  int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(sizes_[index_]);
  write_or_throw(file_, header, sizeof(header), temp_path_);
  left_ = sizes_[index_];
  written_.push_back({{"file", name}, {"tokens", sizes_[index_]}});
}

void ShardSetWriter::close_current() {
  const bool ok = std::fflush(file_) == 0;
  std::fclose(file_);
  file_ = nullptr;
  if (!ok) throw DataError("prepare: writing shard '" + temp_path_ + "' failed");
  keel::fs::fsync_path(temp_path_);
  keel::fs::rename_durable(temp_path_, dataset_file(out_dir_, written_.back().at("file").get<std::string>()));
}

void ShardSetWriter::append(const uint16_t* tokens, int64_t count) {
  while (count > 0) {
    KEEL_CHECK(file_ != nullptr, "shard writer: more tokens than the " << sizes_.size() << " shards hold");
    if (left_ == 0) {
      close_current();
      ++index_;
      KEEL_CHECK(index_ < sizes_.size(), "shard writer: more tokens than the shards hold");
      open_next();
    }
    const int64_t take = std::min(count, left_);
    write_or_throw(file_, tokens, static_cast<size_t>(take) * sizeof(uint16_t), temp_path_);
    tokens += take;
    count -= take;
    left_ -= take;
  }
}

std::vector<nlohmann::json> ShardSetWriter::finish() {
  KEEL_CHECK(left_ == 0 && index_ + 1 == sizes_.size(),
             "shard writer: " << left_ << " tokens missing from shard " << index_ << " of " << sizes_.size());
  close_current();
  return written_;
}

ProgressLog::ProgressLog(std::string what, double interval_seconds)
    : what_(std::move(what)), interval_(interval_seconds), start_(now_seconds()), last_(start_) {}

void ProgressLog::update(int64_t documents, int64_t bytes, int64_t tokens, bool force) {
  const double now = now_seconds();
  if (!force && now - last_ < interval_) return;
  last_ = now;
  const double elapsed = std::max(now - start_, 1e-9);
  if (tokens > 0) {
    spdlog::info("prepare: {}: {} documents, {:.1f} MB, {} tokens ({:.0f} tokens/s, {:.0f} s)", what_, documents,
                 bytes / 1e6, tokens, tokens / elapsed, elapsed);
  } else {
    spdlog::info("prepare: {}: {} documents, {:.1f} MB ({:.0f} s)", what_, documents, bytes / 1e6, elapsed);
  }
}

}  // namespace keel::prepare_stream
