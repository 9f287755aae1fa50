// GPT-2's byte-level BPE tokenizer (50257 ids), giving exactly the ids of OpenAI's encoder.py and
// of tiktoken's "gpt2" encode_ordinary, so shards made with it line up with GPT-2 checkpoints and
// with llm.c's GPT-2 data.
//
// How it encodes: the text is split by GPT-2's pre-tokenizer regex (data/gpt2_pretokenizer.h);
// each piece's UTF-8 bytes start as single-byte tokens, and the adjacent pair with the lowest merge
// rank (line order in vocab.bpe) is merged, all its non-overlapping occurrences left to right, until
// no pair has a rank. Why ids and not strings inside: the files spell bytes through GPT-2's
// byte-to-unicode table ("Ġ" for a space); loading maps every token back to its raw bytes once, so
// encoding is integer work on a (left id, right id) -> (rank, merged id) table. A bounded cache of
// piece -> ids makes re-encoding common words free, which is most of the work on real text.
// "<|endoftext|>" appearing in the text is ordinary text (encode_ordinary): only eos_id(), added
// by the caller, separates documents.
// The files come from scripts/fetch_tokenizers.sh (<cache>/gpt2/encoder.json and vocab.bpe).
// Thread-safe: encode may run on several threads at once (the cache has its own lock). Torch-free.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace keel {

// Where scripts/fetch_tokenizers.sh puts encoder.json and vocab.bpe: <tokenizer_cache>/gpt2.
std::string gpt2_tokenizer_dir(const std::string& tokenizer_cache);

class Gpt2Tokenizer {
 public:
  static constexpr int kEndOfText = 50256;
  static constexpr int64_t kVocabSize = 50257;

  // Loads GPT-2's encoder.json (token string -> id) and vocab.bpe (the merges, by rank). Throws
  // DataError naming the file and the problem when one is missing or malformed: not JSON, not
  // 50257 distinct ids 0..50256, a token outside the byte alphabet, a merge line that is not two
  // tokens, a merge whose parts or result are not in the vocabulary, not 50000 merges.
  Gpt2Tokenizer(const std::string& encoder_json, const std::string& vocab_bpe);
  ~Gpt2Tokenizer();
  Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept;
  Gpt2Tokenizer& operator=(Gpt2Tokenizer&&) noexcept;

  // The ids of `utf8_text`, as tiktoken's gpt2 encode_ordinary. Any byte string is accepted: a
  // byte that is not valid UTF-8 is a character of its own (see data/gpt2_pretokenizer.h) and
  // keeps its byte's token, so decode(encode(x)) == x always.
  std::vector<int> encode(std::string_view utf8_text) const;

  // The bytes of `ids` concatenated (not necessarily valid UTF-8 for an arbitrary id sequence).
  // Throws DataError naming the first id outside [0, vocab_size()) and its position.
  std::string decode(const std::vector<int>& ids) const;

  // The raw bytes of one token ("<|endoftext|>" for eos_id()); throws DataError out of range.
  std::string token_bytes(int id) const;

  int64_t vocab_size() const { return kVocabSize; }
  int eos_id() const { return kEndOfText; }

 private:
  struct Merge {
    int rank;
    int merged_id;
  };
  struct PieceCache;

  // Appends the ids of one pre-tokenizer piece.
  void encode_piece(std::string_view piece, std::vector<int>& ids) const;
  // Byte-level BPE of one piece, without the cache.
  std::vector<int> merge_piece(std::string_view piece) const;
  const Merge* find_merge(int left_id, int right_id) const;

  std::vector<std::string> token_bytes_;  // id -> raw bytes
  int byte_ids_[256];                     // byte -> id of its one-byte token
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
  std::unique_ptr<PieceCache> cache_;
};

}  // namespace keel
