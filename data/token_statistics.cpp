// Unigram entropy of token shards and document positions of a data window (see token_statistics.h).
#include "data/token_statistics.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/fs.h"
#include "data/dataset_meta.h"

namespace keel {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kTokenIds = 65536;  // every uint16 id

// Occurrences of each token id in the first `max_tokens` tokens of the shards (0 = all).
struct TokenCounts {
  std::vector<int64_t> per_id = std::vector<int64_t>(kTokenIds, 0);
  int64_t total = 0;

  void add(const uint16_t* tokens, int64_t count) {
    for (int64_t i = 0; i < count; ++i) ++per_id[tokens[i]];
    total += count;
  }

  double entropy() const {
    if (total == 0) return 0.0;
    double h = 0.0;
    const double n = static_cast<double>(total);
    for (const int64_t c : per_id) {
      if (c == 0) continue;
      const double p = static_cast<double>(c) / n;
      h -= p * std::log(p);
    }
    return h;
  }
};

TokenCounts count_shards(const std::vector<std::string>& shard_paths, int64_t max_tokens) {
  if (max_tokens < 0) {
    throw DataError("unigram entropy: max_tokens must be >= 0 (0 = all), got " + std::to_string(max_tokens));
  }
  TokenCounts counts;
  for (const auto& path : shard_paths) {
    if (max_tokens > 0 && counts.total >= max_tokens) break;
    const TokenShard shard(path);
    const int64_t take = max_tokens > 0 ? std::min(shard.num_tokens(), max_tokens - counts.total) : shard.num_tokens();
    shard.scan(0, take, [&counts](const uint16_t* tokens, int64_t n) { counts.add(tokens, n); });
  }
  return counts;
}

// meta.json's entropy, when it describes exactly these shards; nothing for a missing, unreadable
// or older meta.json (written before the entropy was recorded) or another shard selection.
std::optional<double> stored_entropy(const std::string& data_dir, const std::vector<std::string>& train_shards) {
  json meta;
  try {
    meta = read_dataset_meta(data_dir);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  try {
    const json& value = meta.at("train_unigram_entropy");
    const json& listed = meta.at("train_shards");
    if (!value.is_number() || !listed.is_array() || listed.size() != train_shards.size()) return std::nullopt;
    for (size_t i = 0; i < train_shards.size(); ++i) {
      if (listed[i].at("file").get<std::string>() != stdfs::path(train_shards[i]).filename().string()) {
        return std::nullopt;
      }
    }
    const double entropy = value.get<double>();
    if (!std::isfinite(entropy) || entropy < 0.0) return std::nullopt;
    return entropy;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

}  // namespace

double unigram_entropy(const uint16_t* tokens, int64_t count) {
  KEEL_CHECK(count >= 0 && (tokens != nullptr || count == 0),
             "unigram entropy: bad token buffer (count " << count << ")");
  TokenCounts counts;
  counts.add(tokens, count);
  return counts.entropy();
}

double unigram_entropy(const std::vector<std::string>& shard_paths, int64_t max_tokens) {
  return count_shards(shard_paths, max_tokens).entropy();
}

double dataset_unigram_entropy(const std::string& data_dir, const std::vector<std::string>& train_shards) {
  if (train_shards.empty()) {
    throw DataError("dataset '" + data_dir + "': no training shards to compute the unigram entropy of");
  }
  if (const auto stored = stored_entropy(data_dir, train_shards)) return *stored;
  const TokenCounts counts = count_shards(train_shards, kEntropySampleTokens);
  if (counts.total == 0) {
    throw DataError("dataset '" + data_dir + "': the training shards (first '" + train_shards.front() +
                    "') hold no tokens to compute the unigram entropy of");
  }
  return counts.entropy();
}

DocumentSpan document_span(const TokenShard& shard, int64_t offset, int64_t length, int32_t eos_id) {
  if (eos_id < 0 || eos_id > 65535) {
    throw DataError("document span in '" + shard.path() + "': EOS id " + std::to_string(eos_id) +
                    " is not a uint16 token id (unknown EOS?)");
  }
  if (offset < 0 || length < 0 || offset > shard.num_tokens() || length > shard.num_tokens() - offset) {
    throw DataError("document span in '" + shard.path() + "': window [" + std::to_string(offset) + ", " +
                    std::to_string(offset) + "+" + std::to_string(length) + ") is not inside its " +
                    std::to_string(shard.num_tokens()) + " tokens");
  }
  const uint16_t eos = static_cast<uint16_t>(eos_id);
  // Read with checks (TokenShard::scan), not through the mapping: this runs in a live training run.
  DocumentSpan span;
  shard.scan(0, offset, [&](const uint16_t* tokens, int64_t n) {
    span.first_document += std::count(tokens, tokens + n, eos);
  });
  shard.scan(offset, length, [&](const uint16_t* tokens, int64_t n) {
    span.boundaries += std::count(tokens, tokens + n, eos);
  });
  return span;
}

int32_t dataset_eos_id(const std::string& data_dir) {
  try {
    if (!keel::fs::exists(dataset_file(data_dir, kDatasetMetaFile)) && llmc_folder_problem(data_dir).empty()) {
      return kGpt2EndOfText;  // llm.c shards hold GPT-2 ids
    }
    const json meta = read_dataset_meta(data_dir);
    const json& eos = meta.at("eos_id");
    if (!eos.is_number_integer()) return -1;
    const int64_t id = eos.get<int64_t>();
    return id >= 0 && id <= 65535 ? static_cast<int32_t>(id) : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace keel
