// The safetensors writer and strict reader (see safetensors.h). Torch-free.
//
// The writer streams the header and each tensor's bytes straight to the file (a model-size
// checkpoint is never gathered into one extra buffer) and fsyncs it with keel::fs::fsync_path.
// The reader maps (or reads) the whole file and checks the header against the buffer before it
// hands out a single view, so "loaded" always means "every byte accounted for".
#include "checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/fs.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; Keel supports little-endian hosts only");

namespace keel::checkpoint {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // same limit as the reference implementation
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2}, {DType::I8, "I8", 1}, {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

const DTypeInfo& info_of(DType dtype) {
  for (const auto& info : kDTypes)
    if (info.dtype == dtype) return info;
  KEEL_CHECK(false, "invalid DType value " << static_cast<int>(dtype));
}

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw CheckpointError("safetensors file '" + path + "': " + problem);
}

// Number of bytes of `shape` in `dtype`, or nullopt on overflow / negative dims.
std::optional<uint64_t> expected_bytes(const std::vector<int64_t>& shape, DType dtype) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  return n;
}

}  // namespace

size_t dtype_size(DType dtype) { return info_of(dtype).size; }
const char* dtype_name(DType dtype) { return info_of(dtype).name; }

std::optional<DType> dtype_from_name(const std::string& name) {
  for (const auto& info : kDTypes)
    if (name == info.name) return info.dtype;
  return std::nullopt;
}

uint64_t shape_numel(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw CheckpointError("negative dimension " + std::to_string(d) + " in shape");
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
      throw CheckpointError("shape has too many elements (overflow)");
  }
  return n;
}

// ---------------------------------------------------------------------------------- writer ----

std::string safetensors_header(const std::vector<TensorView>& tensors,
                               const std::map<std::string, std::string>& metadata,
                               uint64_t* buffer_size) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    KEEL_CHECK(!t.name.empty(), "safetensors: empty tensor name");
    KEEL_CHECK(t.name != kMetadataKey, "safetensors: tensor name '" << kMetadataKey << "' is reserved");
    KEEL_CHECK(seen.insert(t.name).second, "safetensors: duplicate tensor name '" << t.name << "'");
    auto expected = expected_bytes(t.shape, t.dtype);
    KEEL_CHECK(expected.has_value(), "safetensors: tensor '" << t.name << "' has a negative or overflowing shape");
    KEEL_CHECK(*expected == t.nbytes, "safetensors: tensor '" << t.name << "' has nbytes " << t.nbytes
                                          << " != product(shape) * " << dtype_size(t.dtype) << " = " << *expected);
    KEEL_CHECK(t.data != nullptr || t.nbytes == 0, "safetensors: tensor '" << t.name << "' has null data");
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    KEEL_CHECK(false, "safetensors: cannot encode header (names and metadata must be UTF-8): " << e.what());
  }
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // buffer starts 8-byte aligned
  if (buffer_size) *buffer_size = offset;
  return text;
}

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string header = safetensors_header(tensors, metadata);
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(uint64_t(header.size()) >> (8 * i));
  // DurableFile removes the file when anything fails, so no torn file is left behind.
  keel::fs::DurableFile out(path);
  out.write(length, 8);
  out.write(header.data(), header.size());
  for (const auto& t : tensors) {
    if (t.nbytes > 0) out.write(t.data, t.nbytes);
  }
  out.finish();
}

// ---------------------------------------------------------------------------------- reader ----

struct SafetensorsFile::Impl {
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;
  };

  std::string path;
  const unsigned char* base = nullptr;  // whole file
  uint64_t file_size = 0;
  void* mapping = nullptr;              // mmap mode
  std::unique_ptr<uint64_t[]> owned;    // read mode (8-byte aligned storage)
  uint64_t header_size = 0;
  std::map<std::string, Entry> entries;
  std::vector<std::string> names;
  std::map<std::string, std::string> metadata;

  ~Impl() {
    if (mapping) ::munmap(mapping, file_size);
  }

  void load(Mode mode) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
    struct FdCloser {
      int fd;
      ~FdCloser() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
    file_size = static_cast<uint64_t>(st.st_size);
    if (file_size < 8)
      fail(path, "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
    if (mode == Mode::kMmap) {
      mapping = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (mapping == MAP_FAILED) {
        mapping = nullptr;
        fail(path, std::string("mmap failed: ") + std::strerror(errno));
      }
      base = static_cast<const unsigned char*>(mapping);
    } else {
      owned.reset(new uint64_t[(file_size + 7) / 8]);
      char* p = reinterpret_cast<char*>(owned.get());
      uint64_t done = 0;
      while (done < file_size) {
        ssize_t n = ::read(fd, p + done, file_size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail(path, n == 0 ? "file shrank while reading" : std::string("read failed: ") + std::strerror(errno));
        done += static_cast<uint64_t>(n);
      }
      base = reinterpret_cast<const unsigned char*>(p);
    }
  }

  void parse() {
    for (int i = 0; i < 8; ++i) header_size |= uint64_t(base[i]) << (8 * i);
    if (header_size > kMaxHeaderBytes)
      fail(path, "header length " + std::to_string(header_size) + " exceeds the 100 MB limit");
    if (header_size > file_size - 8)
      fail(path, "header length " + std::to_string(header_size) + " is larger than the file (" +
                     std::to_string(file_size) + " bytes)");
    const char* text = reinterpret_cast<const char*>(base + 8);
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(text, text + header_size);
    } catch (const nlohmann::json::exception& e) {
      fail(path, std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail(path, "header is not a JSON object");
    const uint64_t buffer_size = file_size - 8 - header_size;

    for (const auto& [name, value] : header.items()) {
      if (name == kMetadataKey) {
        if (!value.is_object()) fail(path, "\"__metadata__\" is not an object");
        for (const auto& [k, v] : value.items()) {
          if (!v.is_string()) fail(path, "\"__metadata__\" value of '" + k + "' is not a string");
          metadata[k] = v.get<std::string>();
        }
        continue;
      }
      entries[name] = parse_entry(name, value, buffer_size);
      names.push_back(name);
    }

    // Every byte of the buffer belongs to exactly one tensor: walk the entries by offset.
    std::sort(names.begin(), names.end(), [this](const std::string& a, const std::string& b) {
      const Entry& x = entries.at(a);
      const Entry& y = entries.at(b);
      return std::tie(x.begin, x.end, a) < std::tie(y.begin, y.end, b);
    });
    uint64_t cursor = 0;
    std::string previous;
    for (const auto& name : names) {
      const Entry& e = entries.at(name);
      if (e.begin < cursor) fail(path, "tensors '" + previous + "' and '" + name + "' overlap");
      if (e.begin > cursor) fail(path, uncovered(cursor, e.begin));
      cursor = e.end;
      previous = name;
    }
    if (cursor != buffer_size) fail(path, uncovered(cursor, buffer_size));
  }

  static std::string uncovered(uint64_t from, uint64_t to) {
    return "bytes [" + std::to_string(from) + ", " + std::to_string(to) +
           ") of the data buffer are not covered by any tensor";
  }

  Entry parse_entry(const std::string& name, const nlohmann::json& value, uint64_t buffer_size) const {
    const std::string what = "tensor '" + name + "': ";
    if (!value.is_object()) fail(path, what + "entry is not an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!value.contains(key)) fail(path, what + "missing \"" + key + "\"");
    for (const auto& [key, unused] : value.items())
      if (key != "dtype" && key != "shape" && key != "data_offsets") fail(path, what + "unexpected key '" + key + "'");

    Entry e;
    const auto& dtype = value["dtype"];
    if (!dtype.is_string()) fail(path, what + "\"dtype\" is not a string");
    auto parsed = dtype_from_name(dtype.get<std::string>());
    if (!parsed) fail(path, what + "unknown dtype '" + dtype.get<std::string>() + "'");
    e.dtype = *parsed;

    const auto& shape = value["shape"];
    if (!shape.is_array()) fail(path, what + "\"shape\" is not an array");
    for (const auto& d : shape) {
      if (!d.is_number_integer()) fail(path, what + "\"shape\" must hold integers, got " + d.dump());
      if (!d.is_number_unsigned()) fail(path, what + "negative dimension " + d.dump() + " in shape");
      if (d.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        fail(path, what + "dimension " + d.dump() + " is too large");
      e.shape.push_back(d.get<int64_t>());
    }

    const auto& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      fail(path, what + "\"data_offsets\" must be two non-negative integers, got " + offsets.dump());
    e.begin = offsets[0].get<uint64_t>();
    e.end = offsets[1].get<uint64_t>();
    if (e.end < e.begin)
      fail(path, what + "data_offsets end " + std::to_string(e.end) + " < begin " + std::to_string(e.begin));
    if (e.end > buffer_size)
      fail(path, what + "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                     "] out of range: the data buffer is " + std::to_string(buffer_size) + " bytes");
    auto expected = expected_bytes(e.shape, e.dtype);
    if (!expected) fail(path, what + "shape " + shape.dump() + " overflows");
    if (*expected != e.end - e.begin)
      fail(path, what + "byte span " + std::to_string(e.end - e.begin) + " != product(shape) * " +
                     std::to_string(dtype_size(e.dtype)) + " = " + std::to_string(*expected));
    return e;
  }
};

SafetensorsFile::SafetensorsFile(const std::string& path, Mode mode) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->load(mode);
  impl_->parse();
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

const std::string& SafetensorsFile::path() const { return impl_->path; }
const std::vector<std::string>& SafetensorsFile::names() const { return impl_->names; }
bool SafetensorsFile::has(const std::string& name) const { return impl_->entries.count(name) > 0; }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }
uint64_t SafetensorsFile::header_size() const { return impl_->header_size; }

TensorView SafetensorsFile::view(const std::string& name) const {
  auto it = impl_->entries.find(name);
  if (it == impl_->entries.end()) fail(impl_->path, "no tensor named '" + name + "'");
  const Impl::Entry& e = it->second;
  TensorView v;
  v.name = name;
  v.dtype = e.dtype;
  v.shape = e.shape;
  v.data = impl_->base + 8 + impl_->header_size + e.begin;
  v.nbytes = static_cast<size_t>(e.end - e.begin);
  return v;
}

}  // namespace keel::checkpoint
