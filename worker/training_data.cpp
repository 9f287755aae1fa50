// The trainer's view of the data (see training_data.h).
#include "worker/training_data.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <string>

#include "common/check.h"
#include "common/process.h"
#include "data/dataset_meta.h"
#include "data/token_statistics.h"

namespace keel {

void ensure_dataset(const DataConfig& data) {
  const std::string problem = dataset_problem(data.dir);
  if (problem.empty()) return;
  KEEL_CHECK(data.auto_prepare, "no complete prepared dataset in '"
                                    << data.dir << "': " << problem
                                    << " (run `keel prepare` or set data.auto_prepare=true)");
  std::string text_files;
  for (const auto& file : data.text_files) text_files += (text_files.empty() ? "" : ", ") + nlohmann::json(file).dump();
  const int code = process::run({process::sibling_program("keel-prepare"), "--out", data.dir,
                                 "--set", "data.corpus_cache=" + data.corpus_cache,
                                 "--set", std::string("data.use_embedded_corpus=") + (data.use_embedded_corpus ? "true" : "false"),
                                 "--set", "data.corpus=" + data.corpus,
                                 "--set", "data.text_files=[" + text_files + "]",
                                 "--set", "data.vocab_size=" + std::to_string(data.vocab_size),
                                 "--set", "data.val_fraction=" + std::to_string(data.val_fraction),
                                 "--set", "data.shuffle_seed=" + std::to_string(data.shuffle_seed),
                                 "--set", "data.tokenizer=" + data.tokenizer,
                                 "--set", "data.tokenizer_cache=" + nlohmann::json(data.tokenizer_cache).dump(),
                                 "--set", "data.doc_separator=" + nlohmann::json(data.doc_separator).dump()});
  KEEL_CHECK(code == 0 && dataset_ready(data.dir), "preparing the dataset in '" << data.dir << "' failed (exit code "
                                                                                 << code << ")");
}

torch::Tensor to_device_tokens(const std::vector<int32_t>& tokens, int64_t batch, int64_t seq, torch::Device device) {
  auto cpu = torch::from_blob(const_cast<int32_t*>(tokens.data()), {batch, seq}, torch::kInt);
  if (device.is_cpu()) return cpu.to(torch::kLong);
  auto pinned = torch::empty({batch, seq}, torch::TensorOptions().dtype(torch::kInt).pinned_memory(true));
  pinned.copy_(cpu);
  return pinned.to(device, /*non_blocking=*/true).to(torch::kLong);
}

DataPosition data_position(const DataCursor& before, const DataCursor& after, int64_t tokens) {
  DataPosition p;
  p.epoch = before.epoch;
  p.shard = before.shard_index;
  p.offset = before.position;
  p.next_epoch = after.epoch;
  p.next_shard = after.shard_index;
  p.next_offset = after.position;
  p.tokens = tokens;
  p.crossed_epoch = after.epoch != before.epoch;
  p.crossed_shard = after.shard_index != before.shard_index || p.crossed_epoch;
  return p;
}

void describe_data(DataPosition& data, const DataLoader& loader, int32_t eos_id) {
  if (!data.known() || data.shard >= loader.num_shards()) return;
  const TokenShard& shard = loader.shard(data.shard);
  data.shard_name = std::filesystem::path(shard.path()).filename().string();
  if (eos_id < 0) return;
  const int64_t length = std::min(data.tokens, shard.num_tokens() - data.offset);
  if (length <= 0) return;
  const DocumentSpan span = document_span(shard, data.offset, length, eos_id);
  data.document = span.first_document;
  data.documents = span.boundaries;
}

}  // namespace keel
