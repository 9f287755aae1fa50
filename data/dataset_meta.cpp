// meta.json reading and the readiness check (see dataset_meta.h).
#include "data/dataset_meta.h"

#include <filesystem>

#include "common/fs.h"
#include "data/token_shard.h"

namespace keel {
namespace stdfs = std::filesystem;
using nlohmann::json;

std::string dataset_file(const std::string& dir, const std::string& name) {
  return (stdfs::path(dir) / name).string();
}

json read_dataset_meta(const std::string& out_dir) {
  const std::string path = dataset_file(out_dir, kDatasetMetaFile);
  if (!keel::fs::exists(path)) throw DataError("dataset '" + out_dir + "' has no " + kDatasetMetaFile + " (not prepared)");
  try {
    json meta = json::parse(keel::fs::read_file(path));
    if (!meta.is_object() || meta.value("format_version", 0) != kDatasetMetaFormatVersion) {
      throw DataError("'" + path + "' is not a version " + std::to_string(kDatasetMetaFormatVersion) + " dataset meta file");
    }
    return meta;
  } catch (const json::exception& e) {
    throw DataError("'" + path + "' is malformed: " + e.what());
  }
}

PrepareResult load_prepared_dataset(const std::string& out_dir) {
  const json meta = read_dataset_meta(out_dir);
  try {
    PrepareResult result;
    result.out_dir = out_dir;
    result.tokenizer_model = dataset_file(out_dir, meta.at("tokenizer").at("file").get<std::string>());
    for (const auto& shard : meta.at("train_shards"))
      result.train_shards.push_back(dataset_file(out_dir, shard.at("file").get<std::string>()));
    for (const auto& shard : meta.at("val_shards"))
      result.val_shards.push_back(dataset_file(out_dir, shard.at("file").get<std::string>()));
    result.num_documents = meta.at("num_documents").get<int64_t>();
    result.train_tokens = meta.at("train_tokens").get<int64_t>();
    result.val_tokens = meta.at("val_tokens").get<int64_t>();
    result.tokenizer_vocab_size = meta.at("tokenizer_vocab_size").get<int64_t>();
    result.eos_id = meta.at("eos_id").get<int>();
    result.reused_dataset = true;
    return result;
  } catch (const json::exception& e) {
    throw DataError("'" + dataset_file(out_dir, kDatasetMetaFile) + "' is malformed: " + e.what());
  }
}

bool dataset_ready(const std::string& out_dir) { return dataset_problem(out_dir).empty(); }

std::string dataset_problem(const std::string& out_dir) {
  try {
    const json meta = read_dataset_meta(out_dir);
    const std::string tokenizer = dataset_file(out_dir, meta.at("tokenizer").at("file").get<std::string>());
    if (!keel::fs::exists(tokenizer)) return "its tokenizer '" + tokenizer + "' is missing";
    for (const char* split : {"train_shards", "val_shards"}) {
      if (meta.at(split).empty()) return std::string(kDatasetMetaFile) + " lists no " + split;
      for (const auto& shard : meta.at(split)) {
        const std::string path = dataset_file(out_dir, shard.at("file").get<std::string>());
        const uint64_t tokens = shard.at("tokens").get<uint64_t>();
        const uint64_t expected = kShardHeaderBytes + 2 * tokens;
        if (!keel::fs::exists(path)) return "shard '" + path + "' is missing";
        const uint64_t actual = keel::fs::file_size(path);
        if (actual != expected) {
          return "shard '" + path + "' is " + std::to_string(actual) + " bytes but " + kDatasetMetaFile + " records " +
                 std::to_string(tokens) + " tokens (" + std::to_string(expected) + " bytes): " +
                 (actual < expected ? "truncated" : "changed") + " since it was prepared";
        }
      }
    }
    return "";
  } catch (const std::exception& e) {
    return e.what();  // missing, malformed or unreadable: not ready
  }
}

}  // namespace keel
