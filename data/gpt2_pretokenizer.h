// GPT-2's pre-tokenizer: splits text into the pieces that byte-level BPE then encodes one by one,
// exactly as GPT-2's regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does (leftmost-first alternation, as Python's `regex` and Rust's fancy-regex in tiktoken run it).
// Why by hand and not std::regex: std::regex knows no \p{L}/\p{N}, has no Unicode \s, and is slow;
// the one pattern is a small state machine on code points. It includes the backtracking of
// `\s+(?!\S)`: a whitespace run followed by a non-space leaves its last character to start the next
// piece (so " world" keeps its space), while a single whitespace character before a non-space is a
// piece by itself (matched by the final `\s+`).
// Input is UTF-8. A byte that does not start a valid UTF-8 sequence (stray continuation byte,
// overlong form, surrogate, truncated sequence, > U+10FFFF) counts as one character of the class
// "neither space, letter nor number", so any byte string splits into pieces that concatenate back
// to it. Torch-free.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace keel {

// Iterates over the pieces of `text` (views into it) in order; they concatenate to `text`.
class Gpt2Pretokenizer {
 public:
  explicit Gpt2Pretokenizer(std::string_view text) : text_(text) {}

  // Sets `piece` to the next piece and returns true, or returns false at the end of the text.
  bool next(std::string_view& piece);

 private:
  enum class CharClass { kLetter, kNumber, kWhitespace, kOther };
  struct Char {
    char32_t code_point;  // meaningless for an invalid byte
    std::size_t length;   // bytes
    CharClass char_class;
  };

  // The character starting at byte `pos` (< text size).
  Char char_at(std::size_t pos) const;
  // The end of the run of characters of class `char_class` that starts at `pos`.
  std::size_t run_end(std::size_t pos, CharClass char_class) const;
  // The end of the piece that starts at `start` (< text size).
  std::size_t match_end(std::size_t start) const;
  // Length of the contraction ('s 't 're 've 'm 'll 'd) at `pos`, or 0.
  std::size_t contraction_length(std::size_t pos) const;

  std::string_view text_;
  std::size_t pos_ = 0;
};

// All pieces of `text`, for tests and tools.
std::vector<std::string> gpt2_pretokenize(std::string_view text);

}  // namespace keel
