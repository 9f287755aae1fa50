// The safetensors writer and strict reader: round trips, alignment, writer checks, and one
// handcrafted bad file per validation rule (each must be rejected naming the file and problem).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "tests/checkpoint/test_util.h"

namespace keel::checkpoint {
namespace {

using testutil::ScratchDir;

TensorView make_view(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
                     size_t nbytes) {
  return TensorView{name, dtype, std::move(shape), data, nbytes};
}

TEST(Safetensors, DTypeNamesAndSizes) {
  const std::vector<std::pair<DType, size_t>> all = {
      {DType::F64, 8}, {DType::F32, 4}, {DType::F16, 2}, {DType::BF16, 2}, {DType::I64, 8},
      {DType::I32, 4}, {DType::I16, 2}, {DType::I8, 1},  {DType::U8, 1},   {DType::BOOL, 1}};
  for (const auto& [dtype, size] : all) {
    EXPECT_EQ(dtype_size(dtype), size) << dtype_name(dtype);
    EXPECT_EQ(dtype_from_name(dtype_name(dtype)), dtype);
  }
  EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
  EXPECT_FALSE(dtype_from_name("f32").has_value());
  EXPECT_EQ(shape_numel({}), 1u);
  EXPECT_EQ(shape_numel({2, 0, 3}), 0u);
  EXPECT_THROW(shape_numel({2, -1}), CheckpointError);
}

TEST(Safetensors, RoundTripSeveralDtypesScalarAndMetadata) {
  ScratchDir dir;
  const std::vector<float> f32 = {0.f, 1.5f, -2.25f, 3.f, 1e-20f, -0.f};
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC000, 0x3F00, 0x7F80};  // 1, -2, 0.5, +inf
  const std::vector<uint16_t> f16 = {0x3C00, 0x7BFF};
  const std::vector<double> f64 = {3.25, -1e300};
  const int64_t scalar = 123456789012345;
  const std::vector<int32_t> i32 = {-1, 0, 2147483647};
  const std::vector<int8_t> i8 = {-128, 127};
  const std::vector<uint8_t> mask = {1, 0, 0, 1};
  std::vector<TensorView> tensors = {
      make_view("z.weight", DType::F32, {2, 3}, f32.data(), 24),
      make_view("a.bf16", DType::BF16, {4}, bf16.data(), 8),
      make_view("half", DType::F16, {1, 2}, f16.data(), 4),
      make_view("double", DType::F64, {2}, f64.data(), 16),
      make_view("step", DType::I64, {}, &scalar, 8),
      make_view("empty", DType::F32, {0, 5}, nullptr, 0),
      make_view("i32", DType::I32, {3}, i32.data(), 12),
      make_view("i8", DType::I8, {2}, i8.data(), 2),
      make_view("mask", DType::BOOL, {2, 2}, mask.data(), 4),
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"step", "42"}, {"note", "h\xc3\xa9llo"}};
  const std::string path = dir / "model.safetensors";
  write_safetensors(path, tensors, metadata);

  for (auto mode : {SafetensorsFile::Mode::kMmap, SafetensorsFile::Mode::kRead}) {
    SafetensorsFile file(path, mode);
    EXPECT_EQ(file.path(), path);
    EXPECT_EQ(file.metadata(), metadata);
    ASSERT_EQ(file.names().size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const TensorView& want = tensors[i];
      EXPECT_EQ(file.names()[i], want.name) << "names come back in write order";
      ASSERT_TRUE(file.has(want.name));
      TensorView got = file.view(want.name);
      EXPECT_EQ(got.name, want.name);
      EXPECT_EQ(got.dtype, want.dtype) << want.name;
      EXPECT_EQ(got.shape, want.shape) << want.name;
      ASSERT_EQ(got.nbytes, want.nbytes) << want.name;
      if (want.nbytes) {
        EXPECT_EQ(std::memcmp(got.data, want.data, want.nbytes), 0) << want.name;
      }
    }
    TensorView s = file.view("step");
    EXPECT_TRUE(s.shape.empty());
    int64_t back = 0;
    std::memcpy(&back, s.data, 8);
    EXPECT_EQ(back, scalar);
    EXPECT_FALSE(file.has("missing"));
    EXPECT_THROW(file.view("missing"), CheckpointError);
  }
}

TEST(Safetensors, EmptyFileRoundTrips) {
  ScratchDir dir;
  write_safetensors(dir / "e.safetensors", {}, {});
  SafetensorsFile file(dir / "e.safetensors");
  EXPECT_TRUE(file.names().empty());
  EXPECT_TRUE(file.metadata().empty());
}

TEST(Safetensors, HeaderIsSpacePaddedToEightBytes) {
  ScratchDir dir;
  const std::vector<uint8_t> bytes(7, 1);
  for (size_t len = 1; len <= 9; ++len) {
    const std::string path = dir / ("a" + std::to_string(len));
    std::vector<TensorView> tensors = {make_view(std::string(len, 'n'), DType::U8, {7}, bytes.data(), 7),
                                       make_view("second", DType::U8, {0}, nullptr, 0)};
    write_safetensors(path, tensors, {{"k", std::string(len, 'v')}});
    const std::string raw = keel::fs::read_file(path);
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(raw[i])) << (8 * i);
    EXPECT_EQ((8 + n) % 8, 0u) << "buffer must start 8-byte aligned";
    EXPECT_EQ(raw.size(), 8 + n + 7);
    EXPECT_EQ(raw[8], '{');
    const std::string header = raw.substr(8, n);
    EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}')) << "only spaces after the JSON";
    SafetensorsFile file(path);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(file.view(std::string(len, 'n')).data) % 8, 0u);
  }
}

TEST(Safetensors, WriterRejectsBadInput) {
  ScratchDir dir;
  const std::vector<float> four(4, 1.f);
  const std::string path = dir / "bad.safetensors";
  EXPECT_THROW(write_safetensors(path, {make_view("x", DType::F32, {3}, four.data(), 16)}), keel::KeelError);
  EXPECT_THROW(write_safetensors(path, {make_view("x", DType::F32, {4}, four.data(), 16),
                                        make_view("x", DType::F32, {4}, four.data(), 16)}),
               keel::KeelError);
  EXPECT_THROW(write_safetensors(path, {make_view("__metadata__", DType::F32, {4}, four.data(), 16)}),
               keel::KeelError);
  EXPECT_THROW(write_safetensors(path, {make_view("", DType::F32, {4}, four.data(), 16)}), keel::KeelError);
  EXPECT_THROW(write_safetensors(path, {make_view("x", DType::F32, {-4}, four.data(), 16)}), keel::KeelError);
  EXPECT_THROW(write_safetensors(path, {make_view("x", DType::F32, {4}, nullptr, 16)}), keel::KeelError);
  EXPECT_FALSE(keel::fs::exists(path)) << "no file left behind by a rejected write";
  EXPECT_THROW(write_safetensors(dir / "no/such/dir/f", {}), keel::KeelError);
}

// --- handcrafted bad files -------------------------------------------------------------------

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s;
}

// An 8-byte length, the header text and `buffer_size` zero bytes.
std::string raw_file(const std::string& header, size_t buffer_size) {
  return le64(header.size()) + header + std::string(buffer_size, '\0');
}

void expect_rejected(const std::string& path, const std::string& bytes, const std::string& problem) {
  testutil::write_bytes(path, bytes);
  for (auto mode : {SafetensorsFile::Mode::kMmap, SafetensorsFile::Mode::kRead}) {
    try {
      SafetensorsFile file(path, mode);
      ADD_FAILURE() << "accepted a bad file, expected: " << problem;
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << what;
      EXPECT_NE(what.find(problem), std::string::npos) << "want '" << problem << "' in: " << what;
    }
  }
}

TEST(SafetensorsValidation, ShortFileAndBadHeaderLength) {
  ScratchDir dir;
  const std::string p = dir / "bad.safetensors";
  expect_rejected(p, "", "shorter than the 8-byte header length");
  expect_rejected(p, std::string(5, '\0'), "shorter than the 8-byte header length");
  expect_rejected(p, le64(1000) + "{}", "header length 1000 is larger than the file");
  expect_rejected(p, le64(200'000'000) + "{}", "exceeds the 100 MB limit");
  expect_rejected(p, le64(~uint64_t(0)) + "{}", "exceeds the 100 MB limit");
}

TEST(SafetensorsValidation, HeaderNotJsonOrNotObject) {
  ScratchDir dir;
  const std::string p = dir / "bad.safetensors";
  expect_rejected(p, raw_file("{\"a\": ", 0), "header is not valid JSON");
  expect_rejected(p, raw_file("", 0), "header is not valid JSON");
  expect_rejected(p, raw_file("{\"\xff\": 1}", 0), "header is not valid JSON");  // not UTF-8
  expect_rejected(p, raw_file("[1, 2]", 0), "header is not a JSON object");
  expect_rejected(p, raw_file("{\"__metadata__\": [1]}", 0), "\"__metadata__\" is not an object");
  expect_rejected(p, raw_file("{\"__metadata__\": {\"k\": 1}}", 0), "value of 'k' is not a string");
  expect_rejected(p, raw_file("{\"t\": 5}", 0), "tensor 't': entry is not an object");
}

TEST(SafetensorsValidation, EntryFields) {
  ScratchDir dir;
  const std::string p = dir / "bad.safetensors";
  expect_rejected(p, raw_file(R"({"t": {"shape": [2], "data_offsets": [0, 8]}})", 8), "tensor 't': missing \"dtype\"");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "data_offsets": [0, 8]}})", 8), "missing \"shape\"");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [2]}})", 8), "missing \"data_offsets\"");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}})", 8),
                  "unknown dtype 'Q4'");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8),
                  "negative dimension -2");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8),
                  "must hold integers");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8),
                  "must be two non-negative integers");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [-1, 7]}})", 8),
                  "must be two non-negative integers");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}})", 8),
                  "unexpected key 'x'");
}

TEST(SafetensorsValidation, OffsetsAndSpans) {
  ScratchDir dir;
  const std::string p = dir / "bad.safetensors";
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8),
                  "out of range: the data buffer is 8 bytes");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8),
                  "end 4 < begin 8");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8),
                  "byte span 8 != product(shape) * 4 = 12");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [5000000000000000000], "data_offsets": [0, 8]}})", 8),
                  "overflows");
  expect_rejected(p,
                  raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12),
                  "tensors 'a' and 'b' overlap");
  expect_rejected(p,
                  raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 8),
                  "overlap");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 8),
                  "bytes [4, 8) of the data buffer are not covered by any tensor");
  expect_rejected(p,
                  raw_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                              "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})", 12),
                  "bytes [4, 8) of the data buffer are not covered");
  expect_rejected(p, raw_file(R"({"t": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}})", 3),
                  "bytes [0, 3) of the data buffer are not covered");
}

TEST(SafetensorsValidation, AcceptsHandcraftedGoodFile) {
  // The same builder as above produces a file the reader accepts, so the rejections are specific.
  ScratchDir dir;
  const std::string p = dir / "good.safetensors";
  testutil::write_bytes(p, raw_file(R"({"b": {"dtype": "I32", "shape": [1], "data_offsets": [4, 8]},
                                       "a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
                                       "__metadata__": {"k": "v"}})", 8));
  SafetensorsFile file(p);
  EXPECT_EQ(file.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(file.metadata().at("k"), "v");
  EXPECT_EQ(file.view("b").nbytes, 4u);
}

}  // namespace
}  // namespace keel::checkpoint
