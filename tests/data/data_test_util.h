// Helpers shared by the data tests: scratch folders, raw file writing, error-message checks and a
// generator of English-like text for tokenizer and prepare tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/fs.h"

namespace keel::data_test {

// A fresh folder under the test temp dir, removed when the test ends.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_(::testing::TempDir() + "/keel_data_" + name + "_" + std::to_string(::getpid())) {
    keel::fs::remove_all(path_);
    keel::fs::make_dirs(path_);
  }
  ~ScratchDir() { keel::fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Writes raw bytes: a header of `header_ints` int32 (rest of the 256 zero) and then `tokens`,
// without going through write_token_shard, so malformed shards can be made on purpose.
inline std::string raw_shard_bytes(const std::vector<int32_t>& header_ints, const std::vector<uint16_t>& tokens) {
  std::vector<int32_t> header(256, 0);
  std::copy(header_ints.begin(), header_ints.end(), header.begin());
  std::string bytes(header.size() * 4 + tokens.size() * 2, '\0');
  std::memcpy(bytes.data(), header.data(), header.size() * 4);
  if (!tokens.empty()) std::memcpy(bytes.data() + header.size() * 4, tokens.data(), tokens.size() * 2);
  return bytes;
}

// Runs `body`, expects it to throw E, and expects the message to contain every `fragment`.
template <typename E, typename Body>
void expect_error(Body body, const std::vector<std::string>& fragments) {
  try {
    body();
    ADD_FAILURE() << "expected an exception";
  } catch (const E& e) {
    const std::string message = e.what();
    for (const auto& fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos) << "'" << fragment << "' not in: " << message;
    }
  }
}

// `count` distinct English-like sentences, deterministic for a given `seed`.
inline std::string english_like_text(int count, int seed = 0) {
  static const char* subjects[] = {"The farmer",    "A young teacher",  "My neighbour", "The old captain",
                                   "Every student", "The quiet doctor", "Her brother",  "The small dog"};
  static const char* verbs[] = {"walked to", "looked at", "painted", "remembered", "found", "cleaned", "visited"};
  static const char* objects[] = {"the river",        "a green house",      "the market",
                                  "an empty station", "the garden",         "the long road",
                                  "a wooden bridge",  "the village school", "the harbour"};
  static const char* endings[] = {" in the morning.",      " after the rain.", " with great care.", " before dinner.",
                                  ", and then went home.", " again.",          " last summer."};
  std::string text;
  for (int i = 0; i < count; ++i) {
    const int k = i + seed * 7919;
    text += subjects[k % 8];
    text += ' ';
    text += verbs[(k / 8) % 7];
    text += ' ';
    text += objects[(k / 56) % 9];
    text += endings[(k / 3) % 7];
    text += (i % 5 == 4) ? '\n' : ' ';
  }
  return text;
}

}  // namespace keel::data_test
