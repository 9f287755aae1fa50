// Statistics of token shards that the stability machinery reports against: the unigram entropy of
// the training tokens (the loss a model that ignores context would reach, so a loss near it means
// the model has forgotten everything but token frequencies) and where a data window sits in the
// documents of a shard (so an event can say which documents a bad batch came from).
//
// `keel prepare` stores the training tokens' unigram entropy in meta.json; for a foreign dataset
// (llm.c's shards, no meta.json) it is computed from the shards. Documents are delimited by the
// EOS token that prepare appends to each one. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/token_shard.h"

namespace keel {

// Entropy in nats of the unigram distribution of `count` tokens: H = -sum p log p over token ids,
// p = occurrences / count. 0 for no tokens.
double unigram_entropy(const uint16_t* tokens, int64_t count);

// The same over the first `max_tokens` tokens of the shards, read in the given order (0 = all of
// them). Throws DataError naming a malformed shard, or for a negative max_tokens.
double unigram_entropy(const std::vector<std::string>& shard_paths, int64_t max_tokens = 0);

// At most this many tokens are read when dataset_unigram_entropy has to compute the entropy.
inline constexpr int64_t kEntropySampleTokens = 50'000'000;

// The training tokens' unigram entropy in nats: meta.json's "train_unigram_entropy" when data_dir
// holds a meta.json with it that lists exactly these shards (by file name, in order), else
// computed from the first kEntropySampleTokens tokens of `train_shards`. A missing or unusable
// meta.json is not an error; throws DataError when there are no shards, they hold no tokens, or
// one is malformed.
double dataset_unigram_entropy(const std::string& data_dir, const std::vector<std::string>& train_shards);

// Where a window of tokens sits among the documents of a shard.
struct DocumentSpan {
  int64_t first_document = 0;  // 0-based document holding the window's first token (EOS tokens before it)
  int64_t boundaries = 0;      // EOS tokens inside the window: documents that end in it
};

// The span of [offset, offset + length) in `shard`, whose documents each end with `eos_id`. Scans
// the shard from its start (O(offset + length)): meant for writing an event, not for every step.
// Throws DataError naming the shard when the window is not inside it or eos_id is no uint16 id.
DocumentSpan document_span(const TokenShard& shard, int64_t offset, int64_t length, int32_t eos_id);

// meta.json's "eos_id" in data_dir, GPT-2's <|endoftext|> for a folder of llm.c shards, or -1
// when there is no usable meta.json (a foreign dataset) or it records none. Never throws.
int32_t dataset_eos_id(const std::string& data_dir);

}  // namespace keel
