// Deterministic, resumable sequential batches over token shards, in llm.c's layout.
//
// Why sequential and not shuffled: shards made by `keel prepare` are already shuffled at document
// level (seeded by data.shuffle_seed, before the train/val split; see data/prepare.h), and foreign
// shards (e.g. llm.c's) are read in their own order. A plain position cursor makes a run exactly
// resumable (three integers in a checkpoint) and exactly reproducible across restarts, which the
// stability machinery relies on to replay or skip a data window. Every rank reads the same global
// batch of world_size*B*T+1 tokens from the cursor; rank r takes the slice starting at r*B*T, so
// rank batches of one step concatenate to what a single rank with batch world_size*B would read.
// Each batch window is read with pread after a check that its shard is unchanged on disk
// (TokenShard::read_tokens): a shard truncated or rewritten under a running job ends it with a
// DataError naming the file and both sizes, never a SIGBUS. The sizes a config implies are checked
// against the data before training: every shard holds one global batch (the constructor) and the
// evaluation fits the validation shards (eval_batches_that_fit). Torch-free.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "data/token_shard.h"

namespace keel {

// Where the next global batch starts. Saved in checkpoints; identical on every rank.
struct DataCursor {
  int64_t shard_index = 0;  // index into the loader's shard list
  int64_t position = 0;     // token offset of the global batch inside that shard
  int64_t epoch = 0;        // completed passes over all shards

  nlohmann::json to_json() const;
  // Throws DataError naming the missing or ill-typed key.
  static DataCursor from_json(const nlohmann::json& json);
  bool operator==(const DataCursor& other) const {
    return shard_index == other.shard_index && position == other.position && epoch == other.epoch;
  }
  bool operator!=(const DataCursor& other) const { return !(*this == other); }
};

// One rank's batch: row-major [batch_size, seq_len] token ids; targets are inputs shifted by one.
struct TokenBatch {
  std::vector<int32_t> inputs;
  std::vector<int32_t> targets;
  int64_t batch_size = 0;
  int64_t seq_len = 0;
};

class DataLoader {
 public:
  // Opens and validates every shard. Throws DataError if the list is empty, a shard is malformed or a
  // shard holds fewer than world_size*batch_size*seq_len+1 tokens (it could never give a batch).
  DataLoader(std::vector<std::string> shard_paths, int64_t batch_size, int64_t seq_len, int64_t rank = 0,
             int64_t world_size = 1);

  // Reads this rank's slice of the global batch at the cursor, then advances the cursor. Throws
  // DataError naming the shard when its file was truncated or rewritten since it was opened.
  TokenBatch next();

  DataCursor cursor() const { return cursor_; }
  // Resumes at `cursor`. Throws DataError if the shard index, position or epoch is out of range.
  // A position inside the shard but too close to its end for a whole global batch (possible when
  // resuming with a larger batch or world size) moves on to the next shard, exactly as reading
  // would have.
  void set_cursor(const DataCursor& cursor);
  // Advances as if `n` global batches had been read, without reading them (skips a bad window).
  void skip_batches(int64_t n);
  // Throws DataError naming the first shard holding a token id >= vocab_size.
  void check_vocab(int64_t vocab_size) const;

  int64_t batch_size() const { return batch_size_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t rank() const { return rank_; }
  int64_t world_size() const { return world_size_; }
  int64_t num_shards() const { return static_cast<int64_t>(shards_.size()); }
  const TokenShard& shard(int64_t index) const { return shards_.at(static_cast<size_t>(index)); }
  // Tokens in one global batch, excluding the extra target token: world_size * B * T.
  int64_t global_batch_tokens() const { return world_size_ * batch_size_ * seq_len_; }
  // Global batches one pass over all shards gives (from a cursor at the start), before the epoch
  // wraps around.
  int64_t batches_per_pass() const;

 private:
  // Moves the cursor past one global batch, switching shard / epoch when the rest of the shard
  // cannot hold another whole global batch.
  void advance();
  // Moves to the next shard (and the next epoch after the last) while the cursor cannot read a
  // whole global batch.
  void normalize();
  bool fits(int64_t shard_index, int64_t position) const;

  std::vector<TokenShard> shards_;
  int64_t batch_size_;
  int64_t seq_len_;
  int64_t rank_;
  int64_t world_size_;
  DataCursor cursor_;
  std::vector<uint16_t> window_;  // next()'s read buffer: this rank's tokens and one target more
};

// Before training: an evaluation of `eval_batches` batches over `val_shards` (what the trainer
// reads: dp_size x batch_size x seq_len tokens each, from the start) must not wrap around and
// evaluate the same tokens twice (nor, with a huge value, run for ever). Returns the batches the
// evaluation uses: eval_batches, or the largest number that fits, with `warning` (when given)
// naming train.eval_batches, the tokens the validation shards hold and that number. A config
// made for a large corpus (gpt2-124m's 20 batches) then still runs on a small one, evaluating all
// of its validation data once. DataError (as DataLoader) for a malformed validation shard or one
// smaller than one batch.
int64_t eval_batches_that_fit(const std::vector<std::string>& val_shards, int64_t eval_batches, int64_t batch_size,
                              int64_t seq_len, int64_t dp_size, std::string* warning = nullptr);

// Files in `dir` whose names match the fnmatch `pattern` (e.g. "train_*.bin"), as "dir/name",
// sorted by name. Throws DataError naming dir and pattern when the folder is missing or nothing
// matches.
std::vector<std::string> glob_shards(const std::string& dir, const std::string& pattern);
// The same listing with no match an empty result (a missing or unreadable folder still throws).
std::vector<std::string> matching_files(const std::string& dir, const std::string& pattern);

}  // namespace keel
