// GPT-2's pre-tokenizer regex as a hand-written matcher on UTF-8 code points; see the header for
// the pattern and why it is not std::regex. Torch-free.
#include "data/gpt2_pretokenizer.h"

#include <cstdint>

#include "data/unicode_classes.h"

namespace keel {
namespace {

bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

}  // namespace

Gpt2Pretokenizer::Char Gpt2Pretokenizer::char_at(std::size_t pos) const {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text_.data());
  const std::size_t available = text_.size() - pos;
  const unsigned char lead = bytes[pos];
  if (lead < 0x80) {
    // ASCII, by far the most common case: no table search.
    const char32_t cp = lead;
    CharClass char_class = CharClass::kOther;
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) {
      char_class = CharClass::kLetter;
    } else if (cp >= '0' && cp <= '9') {
      char_class = CharClass::kNumber;
    } else if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) {
      char_class = CharClass::kWhitespace;
    }
    return {cp, 1, char_class};
  }

  // The well-formed UTF-8 sequences of the Unicode standard (table 3-7): the second byte's range
  // depends on the lead byte, which excludes overlong forms, surrogates and code points above
  // U+10FFFF. Anything else is one invalid byte.
  std::size_t length = 0;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xBF;
  char32_t cp = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    cp = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    cp = lead & 0x0F;
    if (lead == 0xE0) second_min = 0xA0;
    if (lead == 0xED) second_max = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    cp = lead & 0x07;
    if (lead == 0xF0) second_min = 0x90;
    if (lead == 0xF4) second_max = 0x8F;
  }
  const Char invalid_byte{0, 1, CharClass::kOther};
  if (length == 0 || available < length) return invalid_byte;
  if (bytes[pos + 1] < second_min || bytes[pos + 1] > second_max) return invalid_byte;
  for (std::size_t i = 1; i < length; ++i) {
    if (!is_continuation(bytes[pos + i])) return invalid_byte;
    cp = (cp << 6) | (bytes[pos + i] & 0x3F);
  }

  CharClass char_class = CharClass::kOther;
  if (is_unicode_letter(cp)) {
    char_class = CharClass::kLetter;
  } else if (is_unicode_number(cp)) {
    char_class = CharClass::kNumber;
  } else if (is_unicode_whitespace(cp)) {
    char_class = CharClass::kWhitespace;
  }
  return {cp, length, char_class};
}

std::size_t Gpt2Pretokenizer::run_end(std::size_t pos, CharClass char_class) const {
  while (pos < text_.size()) {
    const Char c = char_at(pos);
    if (c.char_class != char_class) break;
    pos += c.length;
  }
  return pos;
}

std::size_t Gpt2Pretokenizer::contraction_length(std::size_t pos) const {
  // Case-sensitive, as in GPT-2: "'S" is not a contraction. All ASCII, so bytes compare directly.
  if (text_[pos] != '\'' || pos + 1 >= text_.size()) return 0;
  const char first = text_[pos + 1];
  if (first == 's' || first == 't' || first == 'm' || first == 'd') return 2;
  if (pos + 2 >= text_.size()) return 0;
  const char second = text_[pos + 2];
  if ((first == 'r' && second == 'e') || (first == 'v' && second == 'e') || (first == 'l' && second == 'l')) return 3;
  return 0;
}

bool Gpt2Pretokenizer::next(std::string_view& piece) {
  if (pos_ >= text_.size()) return false;
  const std::size_t start = pos_;
  pos_ = match_end(start);
  piece = text_.substr(start, pos_ - start);
  return true;
}

std::size_t Gpt2Pretokenizer::match_end(std::size_t start) const {
  const std::size_t contraction = contraction_length(start);
  if (contraction > 0) return start + contraction;

  const Char first = char_at(start);
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+` without the optional space.
  if (first.char_class != CharClass::kWhitespace) return run_end(start, first.char_class);
  // The same three with their optional leading space (only U+0020, not any \s).
  if (first.code_point == ' ' && start + 1 < text_.size()) {
    const Char second = char_at(start + 1);
    if (second.char_class != CharClass::kWhitespace) return run_end(start + 1, second.char_class);
  }

  // `\s+(?!\S)|\s+`: the whole run when it reaches the end of the text; before a non-space, the run
  // minus its last character (backtracking until the lookahead sees whitespace), unless the run is
  // that one character, which the final `\s+` then takes alone.
  std::size_t last_char_start = start;
  std::size_t end = start;
  while (end < text_.size()) {
    const Char c = char_at(end);
    if (c.char_class != CharClass::kWhitespace) break;
    last_char_start = end;
    end += c.length;
  }
  if (end < text_.size() && last_char_start > start) return last_char_start;
  return end;
}

std::vector<std::string> gpt2_pretokenize(std::string_view text) {
  std::vector<std::string> pieces;
  Gpt2Pretokenizer pretokenizer(text);
  std::string_view piece;
  while (pretokenizer.next(piece)) pieces.emplace_back(piece);
  return pieces;
}

}  // namespace keel
