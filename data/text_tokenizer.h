// One face for the two tokenizers a dataset can use: SentencePiece (trained by `prepare` on the
// corpus) and GPT-2's byte-level BPE (llm.c shards, `prepare --tokenizer gpt2`). Tools that turn
// text into ids and back (`prepare`, keel-tokenize, keel-detokenize) open the right one from a
// dataset folder or a tokenizer file and need not know which it is. Lives in keel_data_prepare with
// SentencePiece, whose bundled protobuf-lite must stay out of LibTorch and gRPC processes. Torch-free.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset_meta.h"

namespace keel {

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  // Safe to call from several threads at once (prepare encodes documents in parallel).
  virtual std::vector<int> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int eos_id() const = 0;
  virtual std::string kind() const = 0;  // kTokenizerSentencePiece or kTokenizerGpt2
};

// The tokenizer `description` names (its files must exist; DataError / KeelError naming them).
std::unique_ptr<TextTokenizer> open_tokenizer(const DatasetTokenizer& description);

// The tokenizer at `path`: a dataset folder (prepared or llm.c shards; see dataset_tokenizer), a
// SentencePiece .model file, or GPT-2's encoder.json (vocab.bpe beside it). `tokenizer_cache` is
// where GPT-2's files are for a folder of llm.c shards. Throws DataError naming the path.
std::unique_ptr<TextTokenizer> open_tokenizer_at(const std::string& path, const std::string& tokenizer_cache);

}  // namespace keel
