// Durable writes and checksums.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <string>

#include "common/check.h"
#include "common/fs.h"

TEST(Fs, AtomicWriteReplacesWholeFile) {
  std::string dir = testing::TempDir() + "/keel_fs_test";
  keel::fs::make_dirs(dir);
  std::string path = dir + "/a.txt";
  keel::fs::write_file_atomic(path, std::string("first version"));
  keel::fs::write_file_atomic(path, std::string("second"));
  EXPECT_EQ(keel::fs::read_file(path), "second");
  for (const auto& name : keel::fs::list_dir(dir)) EXPECT_EQ(name.find(".tmp."), std::string::npos) << name;
  keel::fs::remove_all(dir);
}

TEST(Fs, Crc32MatchesZlibReference) {
  // Standard check value of CRC-32 for "123456789".
  EXPECT_EQ(keel::fs::crc32("123456789", 9), 0xCBF43926u);
  std::string dir = testing::TempDir() + "/keel_fs_crc";
  keel::fs::make_dirs(dir);
  std::string data(3 << 20, 'x');
  data[12345] = 'y';
  keel::fs::write_file_atomic(dir + "/f", data);
  EXPECT_EQ(keel::fs::crc32_file(dir + "/f"), keel::fs::crc32(data.data(), data.size()));
  keel::fs::remove_all(dir);
}

TEST(Fs, ErrorsCarryPath) {
  try {
    keel::fs::read_file("/nonexistent/keel/file");
    FAIL();
  } catch (const keel::KeelError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/keel/file"), std::string::npos);
  }
}
