// GPT-2's byte-level BPE: loading encoder.json and vocab.bpe into byte-level id tables, and
// encoding pieces by merge rank. See the header for the algorithm and why it works on ids.
// Torch-free.
#include "data/gpt2_bpe.h"

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "data/data_file.h"
#include "data/gpt2_pretokenizer.h"
#include "data/token_shard.h"

namespace keel {
namespace {

constexpr int kMergeCount = 50000;
// The cache keeps at most this many pieces and is emptied when full: bounded memory on any corpus,
// while the few thousand words that make up most of real text are back in it right away.
constexpr std::size_t kCacheCapacity = 1 << 17;
// Longer pieces (runs of spaces, long digit strings, base64) rarely repeat; caching them would
// only hold memory.
constexpr std::size_t kMaxCachedPieceBytes = 64;

std::string read_tokenizer_file(const std::string& path) {
  return read_data_file(path, "GPT-2 tokenizer file",
                        "run scripts/fetch_tokenizers.sh to download encoder.json and vocab.bpe");
}

// GPT-2's bytes_to_unicode(), inverted: the code point that spells each byte in encoder.json and
// vocab.bpe -> the byte. Printable Latin-1 bytes spell themselves; the other 68 bytes (controls,
// space, DEL, NBSP, soft hyphen) are shifted to U+0100 onwards in byte order, so every token is
// printable and has no space.
std::unordered_map<char32_t, unsigned char> unicode_to_byte() {
  std::unordered_map<char32_t, unsigned char> table;
  char32_t shifted = 256;
  for (int byte = 0; byte < 256; ++byte) {
    const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE);
    table[printable ? static_cast<char32_t>(byte) : shifted++] = static_cast<unsigned char>(byte);
  }
  return table;
}

// The raw bytes that a token string of the files spells, or false when it holds a character
// outside the byte alphabet (or is not UTF-8).
bool token_string_to_bytes(const std::string& token, const std::unordered_map<char32_t, unsigned char>& alphabet,
                           std::string& bytes) {
  bytes.clear();
  for (std::size_t i = 0; i < token.size();) {
    // The alphabet ends at U+0143, so every character is one ASCII byte or a two-byte sequence.
    const auto lead = static_cast<unsigned char>(token[i]);
    char32_t cp = lead;
    std::size_t length = 1;
    if (lead >= 0x80) {
      const bool two_byte = lead >= 0xC2 && lead <= 0xDF && i + 1 < token.size() &&
                            (static_cast<unsigned char>(token[i + 1]) & 0xC0) == 0x80;
      if (!two_byte) return false;
      cp = (static_cast<char32_t>(lead & 0x1F) << 6) | (static_cast<unsigned char>(token[i + 1]) & 0x3F);
      length = 2;
    }
    const auto found = alphabet.find(cp);
    if (found == alphabet.end()) return false;
    bytes += static_cast<char>(found->second);
    i += length;
  }
  return !bytes.empty();
}

uint64_t pair_key(int left_id, int right_id) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left_id)) << 32) | static_cast<uint32_t>(right_id);
}

}  // namespace

struct Gpt2Tokenizer::PieceCache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int>> ids_by_piece;
};

std::string gpt2_tokenizer_dir(const std::string& tokenizer_cache) { return tokenizer_cache + "/gpt2"; }

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& encoder_json, const std::string& vocab_bpe)
    : cache_(std::make_unique<PieceCache>()) {
  const auto alphabet = unicode_to_byte();

  nlohmann::json encoder;
  try {
    encoder = nlohmann::json::parse(read_tokenizer_file(encoder_json));
  } catch (const nlohmann::json::exception& e) {
    throw DataError("GPT-2 encoder file '" + encoder_json + "' is not valid JSON: " + e.what());
  }
  if (!encoder.is_object() || encoder.size() != static_cast<std::size_t>(kVocabSize)) {
    throw DataError("GPT-2 encoder file '" + encoder_json + "' must be a JSON object of " +
                    std::to_string(kVocabSize) + " tokens, found " +
                    (encoder.is_object() ? std::to_string(encoder.size()) + " tokens" : std::string(encoder.type_name())));
  }
  token_bytes_.assign(kVocabSize, std::string());
  std::vector<bool> seen(kVocabSize, false);
  std::unordered_map<std::string, int> id_by_bytes;
  id_by_bytes.reserve(kVocabSize);
  std::string bytes;
  for (const auto& [token, value] : encoder.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() >= kVocabSize) {
      throw DataError("GPT-2 encoder file '" + encoder_json + "': token '" + token + "' has id " + value.dump() +
                      ", not an integer in [0, " + std::to_string(kVocabSize) + ")");
    }
    const int id = value.get<int>();
    if (seen[id]) {
      throw DataError("GPT-2 encoder file '" + encoder_json + "': id " + std::to_string(id) + " is given twice");
    }
    seen[id] = true;
    if (!token_string_to_bytes(token, alphabet, bytes)) {
      throw DataError("GPT-2 encoder file '" + encoder_json + "': token '" + token +
                      "' has a character outside GPT-2's byte alphabet");
    }
    token_bytes_[id] = bytes;
    id_by_bytes.emplace(bytes, id);
  }
  if (token_bytes_[kEndOfText] != "<|endoftext|>") {
    throw DataError("GPT-2 encoder file '" + encoder_json + "': id " + std::to_string(kEndOfText) +
                    " is not <|endoftext|>");
  }
  for (int byte = 0; byte < 256; ++byte) {
    const auto found = id_by_bytes.find(std::string(1, static_cast<char>(byte)));
    if (found == id_by_bytes.end()) {
      throw DataError("GPT-2 encoder file '" + encoder_json + "' has no token for byte " + std::to_string(byte));
    }
    byte_ids_[byte] = found->second;
  }

  const std::string merges_text = read_tokenizer_file(vocab_bpe);
  std::istringstream lines(merges_text);
  std::string line;
  int line_number = 0;
  int rank = 0;
  merges_.reserve(kMergeCount);
  std::string left_bytes;
  std::string right_bytes;
  while (std::getline(lines, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_number == 1 && line.rfind("#version", 0) == 0)) continue;
    const auto where = "GPT-2 merges file '" + vocab_bpe + "' line " + std::to_string(line_number) + " ('" + line + "')";
    const std::size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos) {
      throw DataError(where + ": not two tokens separated by one space");
    }
    if (!token_string_to_bytes(line.substr(0, space), alphabet, left_bytes) ||
        !token_string_to_bytes(line.substr(space + 1), alphabet, right_bytes)) {
      throw DataError(where + ": a character outside GPT-2's byte alphabet");
    }
    const auto left = id_by_bytes.find(left_bytes);
    const auto right = id_by_bytes.find(right_bytes);
    const auto merged = id_by_bytes.find(left_bytes + right_bytes);
    if (left == id_by_bytes.end() || right == id_by_bytes.end() || merged == id_by_bytes.end()) {
      throw DataError(where + ": merge pair not in the vocabulary of '" + encoder_json + "'");
    }
    if (!merges_.emplace(pair_key(left->second, right->second), Merge{rank, merged->second}).second) {
      throw DataError(where + ": the same merge is listed twice");
    }
    ++rank;
  }
  if (rank != kMergeCount) {
    throw DataError("GPT-2 merges file '" + vocab_bpe + "' has " + std::to_string(rank) + " merges, expected " +
                    std::to_string(kMergeCount));
  }
}

Gpt2Tokenizer::~Gpt2Tokenizer() = default;
Gpt2Tokenizer::Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept = default;
Gpt2Tokenizer& Gpt2Tokenizer::operator=(Gpt2Tokenizer&&) noexcept = default;

const Gpt2Tokenizer::Merge* Gpt2Tokenizer::find_merge(int left_id, int right_id) const {
  const auto found = merges_.find(pair_key(left_id, right_id));
  return found == merges_.end() ? nullptr : &found->second;
}

std::vector<int> Gpt2Tokenizer::merge_piece(std::string_view piece) const {
  // A doubly linked list of symbols (initially one per byte) and a min-heap of candidate merges
  // ordered by (rank, position). Popping the lowest rank, leftmost first, and skipping candidates
  // whose symbols have changed since, merges every non-overlapping occurrence of the best pair left
  // to right before any higher rank, exactly as GPT-2's loop does, in O(n log n) rather than
  // O(n^2) for long pieces. A merge never makes a pair of lower rank than its own (the merged token
  // did not exist before it), so the order is the same.
  struct Symbol {
    int id;
    int prev;
    int next;
  };
  struct Candidate {
    int rank;
    int left;
    int right;
    int left_id;
    int right_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  const int count = static_cast<int>(piece.size());
  std::vector<Symbol> symbols(count);
  for (int i = 0; i < count; ++i) {
    symbols[i] = {byte_ids_[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < count ? i + 1 : -1};
  }
  std::vector<Candidate> heap;
  const auto push_candidate = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    if (const Merge* merge = find_merge(symbols[left].id, symbols[right].id)) {
      heap.push_back({merge->rank, left, right, symbols[left].id, symbols[right].id});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int i = 0; i + 1 < count; ++i) push_candidate(i, i + 1);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate candidate = heap.back();
    heap.pop_back();
    Symbol& left = symbols[candidate.left];
    if (left.id != candidate.left_id || left.next != candidate.right ||
        symbols[candidate.right].id != candidate.right_id) {
      continue;
    }
    Symbol& right = symbols[candidate.right];
    left.id = find_merge(candidate.left_id, candidate.right_id)->merged_id;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = candidate.left;
    right.id = -1;
    push_candidate(left.prev, candidate.left);
    push_candidate(candidate.left, left.next);
  }

  std::vector<int> ids;
  for (int i = count > 0 ? 0 : -1; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
  return ids;
}

void Gpt2Tokenizer::encode_piece(std::string_view piece, std::vector<int>& ids) const {
  if (piece.size() == 1) {
    ids.push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  std::string key;
  if (cacheable) {
    key.assign(piece);
    std::lock_guard<std::mutex> lock(cache_->mutex);
    const auto found = cache_->ids_by_piece.find(key);
    if (found != cache_->ids_by_piece.end()) {
      ids.insert(ids.end(), found->second.begin(), found->second.end());
      return;
    }
  }
  std::vector<int> piece_ids = merge_piece(piece);
  ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (cache_->ids_by_piece.size() >= kCacheCapacity) cache_->ids_by_piece.clear();
    cache_->ids_by_piece.emplace(std::move(key), std::move(piece_ids));
  }
}

std::vector<int> Gpt2Tokenizer::encode(std::string_view utf8_text) const {
  std::vector<int> ids;
  // Real English text averages a little over four bytes per GPT-2 token.
  ids.reserve(utf8_text.size() / 4 + 1);
  Gpt2Pretokenizer pretokenizer(utf8_text);
  std::string_view piece;
  while (pretokenizer.next(piece)) encode_piece(piece, ids);
  return ids;
}

std::string Gpt2Tokenizer::decode(const std::vector<int>& ids) const {
  std::string text;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const int id = ids[i];
    if (id < 0 || id >= kVocabSize) {
      throw DataError("GPT-2 decode: id " + std::to_string(id) + " at position " + std::to_string(i) +
                      " is outside [0, " + std::to_string(kVocabSize) + ")");
    }
    text += token_bytes_[id];
  }
  return text;
}

std::string Gpt2Tokenizer::token_bytes(int id) const {
  if (id < 0 || id >= kVocabSize) {
    throw DataError("GPT-2 token id " + std::to_string(id) + " is outside [0, " + std::to_string(kVocabSize) + ")");
  }
  return token_bytes_[id];
}

}  // namespace keel
