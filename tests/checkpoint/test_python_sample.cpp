// Writes a safetensors file with known values for the independent Python reader
// (read_safetensors.py --check-sample). CTest runs this test first (fixture safetensors_sample,
// path from $KEEL_SAFETENSORS_SAMPLE) and the Python check after it; run alone it writes to the
// gtest temp dir and only checks the C++ side. Keep the values in sync with SAMPLE in the script.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"

namespace keel::checkpoint {
namespace {

TEST(SafetensorsSample, WriteForPython) {
  const char* env = std::getenv("KEEL_SAFETENSORS_SAMPLE");
  const std::string path = env && *env ? env : testing::TempDir() + "/keel_python_sample.safetensors";

  std::vector<float> weight(6);
  for (int i = 0; i < 6; ++i) weight[i] = 0.5f * static_cast<float>(i);
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC000, 0x3F00};        // 1.0, -2.0, 0.5
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x3800, 0x7BFF};  // 1.0, -2.0, 0.5, 65504
  const std::vector<double> f64 = {3.25, -1e300};
  const int64_t step = 123456789012;
  const std::vector<int32_t> i32 = {-1, 0, 2147483647};
  const std::vector<int16_t> i16 = {-32768, 7};
  const std::vector<int8_t> i8 = {-128, -1, 0, 127};
  const std::vector<uint8_t> u8 = {0, 128, 255};
  const std::vector<uint8_t> mask = {1, 0, 0, 1};
  const std::vector<TensorView> tensors = {
      {"model.weight", DType::F32, {2, 3}, weight.data(), 24},
      {"bf16", DType::BF16, {3}, bf16.data(), 6},
      {"half", DType::F16, {2, 2}, f16.data(), 8},
      {"double", DType::F64, {2}, f64.data(), 16},
      {"step", DType::I64, {}, &step, 8},
      {"i32", DType::I32, {3}, i32.data(), 12},
      {"i16", DType::I16, {2}, i16.data(), 4},
      {"i8", DType::I8, {4}, i8.data(), 4},
      {"u8", DType::U8, {3}, u8.data(), 3},
      {"mask", DType::BOOL, {2, 2}, mask.data(), 4},
      {"empty", DType::F32, {0, 3}, nullptr, 0},
  };
  write_safetensors(path, tensors, {{"format", "pt"}, {"step", "7"}, {"note", "h\xc3\xa9llo"}});

  SafetensorsFile file(path);
  ASSERT_EQ(file.names().size(), tensors.size());
  EXPECT_EQ(file.names().front(), "model.weight");
  EXPECT_EQ(file.metadata().at("step"), "7");
}

}  // namespace
}  // namespace keel::checkpoint
