// meta.json reading and the readiness check (see dataset_meta.h).
#include "data/dataset_meta.h"

#include <filesystem>
#include <fstream>

#include "common/fs.h"
#include "data/data_loader.h"
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

namespace {

// The first file in `dir` matching `pattern`, sorted by name; "" when none.
std::string first_match(const std::string& dir, const char* pattern) {
  const std::vector<std::string> paths = matching_files(dir, pattern);
  return paths.empty() ? "" : paths.front();
}

// Whether `path` starts with llm.c's shard magic (the full check is TokenShard's).
bool has_shard_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  int32_t magic = 0;
  return in.read(reinterpret_cast<char*>(&magic), sizeof(magic)) && magic == kShardMagic;
}

}  // namespace

std::string llmc_folder_problem(const std::string& dir) {
  if (!keel::fs::exists(dir)) return "folder '" + dir + "' does not exist";
  if (keel::fs::exists(dataset_file(dir, kDatasetMetaFile))) return "it has a " + std::string(kDatasetMetaFile);
  if (keel::fs::exists(dataset_file(dir, "tokenizer.model"))) return "it holds prepare's tokenizer.model but no meta.json";
  const std::string train = first_match(dir, kLlmcTrainPattern);
  const std::string val = first_match(dir, kLlmcValPattern);
  if (train.empty()) return std::string("no ") + kDatasetMetaFile + " and no llm.c training shard (" + kLlmcTrainPattern + ")";
  if (val.empty()) return "llm.c training shards but no validation shard (" + std::string(kLlmcValPattern) + ")";
  for (const auto& path : {train, val}) {
    if (!has_shard_magic(path)) return "'" + path + "' is not an llm.c shard (no magic " + std::to_string(kShardMagic) + ")";
  }
  return "";
}

DatasetTokenizer dataset_tokenizer(const std::string& data_dir, const std::string& tokenizer_cache) {
  DatasetTokenizer tokenizer;
  auto require_files = [&] {
    for (const auto& file : tokenizer.files) {
      if (!keel::fs::exists(file)) {
        throw DataError("the tokenizer of dataset '" + data_dir + "' needs '" + file + "', which is missing" +
                        (tokenizer.kind == kTokenizerGpt2 ? " (scripts/fetch_tokenizers.sh fetches GPT-2's)" : ""));
      }
    }
    return tokenizer;
  };
  if (!keel::fs::exists(dataset_file(data_dir, kDatasetMetaFile))) {
    const std::string problem = llmc_folder_problem(data_dir);
    if (!problem.empty()) throw DataError("dataset '" + data_dir + "': " + problem);
    tokenizer.kind = kTokenizerGpt2;
    const std::string gpt2 = dataset_file(tokenizer_cache, "gpt2");
    tokenizer.files = {dataset_file(gpt2, "encoder.json"), dataset_file(gpt2, "vocab.bpe")};
    tokenizer.vocab_size = kGpt2VocabSize;
    tokenizer.eos_id = kGpt2EndOfText;
    return require_files();
  }
  const json meta = read_dataset_meta(data_dir);
  try {
    const json& section = meta.at("tokenizer");
    tokenizer.kind = section.value("kind", std::string(kTokenizerSentencePiece));
    if (tokenizer.kind != kTokenizerSentencePiece && tokenizer.kind != kTokenizerGpt2) {
      throw DataError("'" + dataset_file(data_dir, kDatasetMetaFile) + "' names an unknown tokenizer kind '" +
                      tokenizer.kind + "'");
    }
    if (section.contains("files")) {
      for (const auto& file : section.at("files")) tokenizer.files.push_back(dataset_file(data_dir, file.get<std::string>()));
    } else {
      tokenizer.files.push_back(dataset_file(data_dir, section.at("file").get<std::string>()));
    }
    tokenizer.vocab_size = meta.at("tokenizer_vocab_size").get<int64_t>();
    tokenizer.eos_id = meta.at("eos_id").get<int>();
  } catch (const json::exception& e) {
    throw DataError("'" + dataset_file(data_dir, kDatasetMetaFile) + "' is malformed: " + e.what());
  }
  return require_files();
}

bool dataset_ready(const std::string& out_dir) { return dataset_problem(out_dir).empty(); }

std::string dataset_problem(const std::string& out_dir) {
  try {
    if (!keel::fs::exists(dataset_file(out_dir, kDatasetMetaFile)) && llmc_folder_problem(out_dir).empty()) {
      return "";  // llm.c shards as they are: TokenShard checks each one when it is opened
    }
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
