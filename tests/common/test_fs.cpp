// Durable writes and checksums.
#include <gtest/gtest.h>
#include <zlib.h>

#include <unistd.h>

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

TEST(Fs, RemoveAllRemovesTreesWithoutFollowingLinks) {
  std::string dir = testing::TempDir() + "/keel_fs_rm";
  std::string outside = testing::TempDir() + "/keel_fs_rm_outside";
  keel::fs::make_dirs(dir + "/a/b/c");
  keel::fs::make_dirs(outside);
  keel::fs::write_file_atomic(dir + "/a/b/c/f", std::string("x"));
  keel::fs::write_file_atomic(dir + "/a/g", std::string("y"));
  keel::fs::write_file_atomic(outside + "/keep", std::string("z"));
  ASSERT_EQ(::symlink(outside.c_str(), (dir + "/a/link").c_str()), 0);
  keel::fs::remove_all(dir);
  EXPECT_FALSE(keel::fs::exists(dir));
  EXPECT_TRUE(keel::fs::exists(outside + "/keep"));  // the link was removed, not its target
  keel::fs::remove_all(dir);                          // a missing path is not an error
  keel::fs::write_file_atomic(outside + "/file", std::string("w"));
  keel::fs::remove_all(outside + "/file");            // a plain file
  EXPECT_FALSE(keel::fs::exists(outside + "/file"));
  keel::fs::remove_all(outside);
}
