// Sequential sharded batch reader and shard globbing (see data_loader.h).
#include "data/data_loader.h"

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/config.h"

namespace keel {

namespace stdfs = std::filesystem;

nlohmann::json DataCursor::to_json() const {
  return {{"shard_index", shard_index}, {"position", position}, {"epoch", epoch}};
}

DataCursor DataCursor::from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw DataError("data cursor: expected a JSON object, got " + json.dump());
  auto read = [&json](const char* key) -> int64_t {
    auto it = json.find(key);
    if (it == json.end()) throw DataError(std::string("data cursor: missing key '") + key + "' in " + json.dump());
    if (!it->is_number_integer()) {
      throw DataError(std::string("data cursor: key '") + key + "' must be an integer, got " + it->dump());
    }
    return it->get<int64_t>();
  };
  DataCursor cursor;
  cursor.shard_index = read("shard_index");
  cursor.position = read("position");
  cursor.epoch = read("epoch");
  return cursor;
}

DataLoader::DataLoader(std::vector<std::string> shard_paths, int64_t batch_size, int64_t seq_len, int64_t rank,
                       int64_t world_size)
    : batch_size_(batch_size), seq_len_(seq_len), rank_(rank), world_size_(world_size) {
  std::ostringstream bad;
  if (batch_size <= 0)
    bad << "batch_size must be positive, got " << batch_size;
  else if (seq_len <= 0)
    bad << "seq_len must be positive, got " << seq_len;
  else if (world_size <= 0)
    bad << "world_size must be positive, got " << world_size;
  else if (rank < 0 || rank >= world_size)
    bad << "rank " << rank << " is outside [0, " << world_size << ")";
  else if (shard_paths.empty())
    bad << "no shards given";
  if (!bad.str().empty()) throw DataError("data loader: " + bad.str());

  shards_.reserve(shard_paths.size());
  const int64_t needed = global_batch_tokens() + 1;
  for (const auto& path : shard_paths) {
    TokenShard shard(path);
    if (shard.num_tokens() < needed) {
      std::ostringstream s;
      s << "shard '" << path << "' has " << shard.num_tokens() << " tokens, fewer than one global batch needs ("
        << needed << " = world_size " << world_size << " * batch " << batch_size << " * seq_len " << seq_len << " + 1)";
      throw DataError(s.str());
    }
    shards_.push_back(std::move(shard));
  }
}

bool DataLoader::fits(int64_t shard_index, int64_t position) const {
  return position + global_batch_tokens() + 1 <= shards_[static_cast<size_t>(shard_index)].num_tokens();
}

void DataLoader::normalize() {
  // Every shard holds at least one global batch (checked at construction), so one step suffices.
  if (fits(cursor_.shard_index, cursor_.position)) return;
  cursor_.position = 0;
  cursor_.shard_index += 1;
  if (cursor_.shard_index == num_shards()) {
    cursor_.shard_index = 0;
    cursor_.epoch += 1;
  }
}

void DataLoader::advance() {
  cursor_.position += global_batch_tokens();
  normalize();
}

TokenBatch DataLoader::next() {
  const int64_t rank_tokens = batch_size_ * seq_len_;
  // Through pread, after a check that the shard is unchanged on disk (token_shard.h says why): a
  // shard truncated or rewritten while the run reads it is a DataError naming it, not a SIGBUS.
  window_.resize(static_cast<size_t>(rank_tokens + 1));
  shards_[static_cast<size_t>(cursor_.shard_index)].read_tokens(cursor_.position + rank_ * rank_tokens,
                                                                 rank_tokens + 1, window_.data());
  TokenBatch batch;
  batch.batch_size = batch_size_;
  batch.seq_len = seq_len_;
  batch.inputs.assign(window_.begin(), window_.end() - 1);
  batch.targets.assign(window_.begin() + 1, window_.end());
  advance();
  return batch;
}

int64_t DataLoader::batches_per_pass() const {
  // Batches start at 0, g, 2g, ... of each shard while a whole one (plus the target token) fits.
  int64_t batches = 0;
  for (const auto& shard : shards_) batches += (shard.num_tokens() - 1) / global_batch_tokens();
  return batches;
}

void DataLoader::set_cursor(const DataCursor& cursor) {
  std::ostringstream bad;
  if (cursor.shard_index < 0 || cursor.shard_index >= num_shards()) {
    bad << "shard_index " << cursor.shard_index << " is outside [0, " << num_shards() << ")";
  } else if (cursor.epoch < 0) {
    bad << "epoch " << cursor.epoch << " is negative";
  } else {
    const auto& shard = shards_[static_cast<size_t>(cursor.shard_index)];
    if (cursor.position < 0 || cursor.position > shard.num_tokens()) {
      bad << "position " << cursor.position << " is outside [0, " << shard.num_tokens() << "] of shard '"
          << shard.path() << "'";
    }
  }
  if (!bad.str().empty())
    throw DataError("data loader: cannot resume at cursor " + cursor.to_json().dump() + ": " + bad.str());
  cursor_ = cursor;
  normalize();
}

void DataLoader::skip_batches(int64_t n) {
  if (n < 0) throw DataError("data loader: cannot skip a negative number of batches (" + std::to_string(n) + ")");
  // One O(1) step per batch keeps skipping identical to reading, shard switches included.
  for (int64_t i = 0; i < n; ++i) advance();
}

void DataLoader::check_vocab(int64_t vocab_size) const {
  for (const auto& shard : shards_) {
    const int64_t max_token = shard.max_token();
    if (shard.num_tokens() > 0 && max_token >= vocab_size) {
      std::ostringstream s;
      s << "shard '" << shard.path() << "' holds token id " << max_token
        << ", outside the model's vocabulary (model.vocab_size = " << vocab_size << "): set model.vocab_size to at least "
        << max_token + 1 << (max_token >= 50000 && max_token < 50257 ? " (GPT-2's ids: 50304 is the usual padded size)" : "")
        << ", or was the data made with another tokenizer?";
      throw DataError(s.str());
    }
  }
}

int64_t eval_batches_that_fit(const std::vector<std::string>& val_shards, int64_t eval_batches, int64_t batch_size,
                              int64_t seq_len, int64_t dp_size, std::string* warning) {
  // Opening the shards also checks that each holds one global batch (a DataError naming it).
  const DataLoader loader(val_shards, batch_size, seq_len, 0, dp_size);
  const int64_t fit = loader.batches_per_pass();
  if (eval_batches <= fit) return eval_batches;
  int64_t tokens = 0;
  for (int64_t i = 0; i < loader.num_shards(); ++i) tokens += loader.shard(i).num_tokens();
  const int64_t g = loader.global_batch_tokens();
  std::ostringstream s;
  s << "train.eval_batches = " << eval_batches << " needs " << eval_batches << " batches of " << g
    << " tokens (parallel.dp " << dp_size << " x train.batch_size " << batch_size << " x seq_len " << seq_len
    << "), but the validation shards ('" << val_shards.front() << "'" << (val_shards.size() > 1 ? ", ..." : "")
    << ": " << val_shards.size() << " shard" << (val_shards.size() > 1 ? "s" : "") << ") hold " << tokens
    << " tokens: at most train.eval_batches = " << fit
    << " fits without evaluating the same tokens twice; evaluating " << fit
    << " batches (all the validation data once; hold out more with data.val_fraction)";
  if (warning) *warning = s.str();
  return fit;
}

std::vector<std::string> glob_shards(const std::string& dir, const std::string& pattern) {
  std::vector<std::string> paths = matching_files(dir, pattern);
  if (paths.empty()) throw DataError("no shards matching '" + pattern + "' in folder '" + dir + "'");
  return paths;
}

std::vector<std::string> matching_files(const std::string& dir, const std::string& pattern) {
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) {
    throw DataError("no shards matching '" + pattern + "': folder '" + dir + "' does not exist");
  }
  std::vector<std::string> names;
  for (const auto& entry : stdfs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code type_ec;  // an entry vanishing while we list is not a matching shard
    if (entry.is_regular_file(type_ec) && ::fnmatch(pattern.c_str(), name.c_str(), FNM_PERIOD) == 0)
      names.push_back(name);
  }
  if (ec) throw DataError("cannot list folder '" + dir + "': " + ec.message());
  std::sort(names.begin(), names.end());
  std::vector<std::string> paths;
  paths.reserve(names.size());
  for (const auto& name : names) paths.push_back((stdfs::path(dir) / name).string());
  return paths;
}

}  // namespace keel
