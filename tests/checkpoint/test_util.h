// Helpers for the checkpoint tests: a scratch folder per test, raw file bytes, byte flipping.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "common/fs.h"

namespace keel::checkpoint::testutil {

// A fresh folder under the gtest temp dir, removed when the test ends.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    std::string tmp = testing::TempDir();
    if (!tmp.empty() && tmp.back() == '/') tmp.pop_back();
    path_ = tmp + "/keel_ckpt_" + std::to_string(::getpid()) + "_" + info->test_suite_name() +
            "_" + info->name();
    keel::fs::remove_all(path_);
    keel::fs::make_dirs(path_);
  }
  ~ScratchDir() {
    try {
      keel::fs::remove_all(path_);
    } catch (...) {
    }
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  keel::fs::write_file_durable(path, bytes.data(), bytes.size());
}

// XORs one byte at `offset` (default: the middle of the file).
inline void flip_byte(const std::string& path, int64_t offset = -1) {
  std::string bytes = keel::fs::read_file(path);
  ASSERT_FALSE(bytes.empty());
  size_t at = offset < 0 ? bytes.size() / 2 : static_cast<size_t>(offset);
  bytes[at] = static_cast<char>(bytes[at] ^ 0x5a);
  write_bytes(path, bytes);
}

inline void truncate_by(const std::string& path, size_t n) {
  std::string bytes = keel::fs::read_file(path);
  ASSERT_GE(bytes.size(), n);
  bytes.resize(bytes.size() - n);
  write_bytes(path, bytes);
}

}  // namespace keel::checkpoint::testutil
