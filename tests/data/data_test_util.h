// Helpers shared by the data tests: scratch folders, raw file writing, error-message checks, a
// generator of English-like text for tokenizer and prepare tests, and an independent (Python +
// numpy) unigram entropy of shard files.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
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

// The unigram entropy in nats of the first `max_tokens` tokens (0 = all) of the shards, computed by
// /usr/bin/python3 with numpy straight from the files (header of 256 int32, then uint16 tokens),
// independently of data/token_statistics.cpp. NaN, with a test failure, when Python fails.
inline double python_unigram_entropy(const std::vector<std::string>& shard_paths, int64_t max_tokens = 0) {
  const std::string script =
      "import sys\n"
      "import numpy as np\n"
      "limit = int(sys.argv[1])\n"
      "parts = []\n"
      "for path in sys.argv[2:]:\n"
      "    header = np.fromfile(path, dtype=\"<i4\", count=256)\n"
      "    assert header[0] == 20240520 and header[1] == 1, path\n"
      "    tokens = np.fromfile(path, dtype=\"<u2\", offset=1024)\n"
      "    assert len(tokens) == header[2], path\n"
      "    parts.append(tokens)\n"
      "tokens = np.concatenate(parts)\n"
      "if limit > 0:\n"
      "    tokens = tokens[:limit]\n"
      "counts = np.bincount(tokens).astype(np.float64)\n"
      "p = counts[counts > 0] / len(tokens)\n"
      "print(repr(float(-(p * np.log(p)).sum())))\n";
  std::string command = "/usr/bin/python3 -c '" + script + "' " + std::to_string(max_tokens);
  for (const auto& path : shard_paths) command += " '" + path + "'";
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "cannot start /usr/bin/python3";
    return std::nan("");
  }
  std::string output;
  char buffer[256];
  while (std::fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  const int status = ::pclose(pipe);
  if (status != 0) {
    ADD_FAILURE() << "python3 + numpy entropy failed (status " << status << "): " << output;
    return std::nan("");
  }
  return std::stod(output);
}

}  // namespace keel::data_test
