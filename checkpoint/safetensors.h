// The safetensors file format (https://github.com/huggingface/safetensors), Torch-free.
//
// Layout: 8-byte little-endian u64 N, then N bytes of UTF-8 JSON header
//   {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the byte buffer; offsets are relative to the start of the buffer. Keel writes tensors in
// the order given, pads the header with spaces so the buffer starts 8-byte aligned, and reads
// with strict validation (every byte of the buffer belongs to exactly one tensor), so a damaged
// or foreign file is rejected with a message naming the file and the problem instead of being
// half-loaded. The Torch side (checkpoint_torch/training_checkpoint.cpp) converts tensors to and
// from views.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"

namespace keel::checkpoint {

// A damaged, truncated or malformed checkpoint file. Messages name the file and the problem.
class CheckpointError : public keel::KeelError {
 public:
  using keel::KeelError::KeelError;
};

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

size_t dtype_size(DType dtype);             // bytes per element
const char* dtype_name(DType dtype);        // "F32", "BF16", ...
std::optional<DType> dtype_from_name(const std::string& name);  // nullopt if unknown

// Product of the dims (1 for a 0-dim scalar); throws CheckpointError on a negative dim or overflow.
uint64_t shape_numel(const std::vector<int64_t>& shape);

// A borrowed tensor: bytes in row-major order, host (little-endian) byte order. Views returned by
// SafetensorsFile point into the file's mapping and live as long as the SafetensorsFile; `data`
// of a file written by another tool may be unaligned (use memcpy, or copy into a tensor).
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Writes `tensors` (in this order) and `metadata` to `path`, streaming the tensor bytes (no copy
// of the whole buffer), then fsyncs the file. No rename: the file is meant to sit in a temporary
// checkpoint folder that is renamed as a whole (see CheckpointStore). Checks that names are
// non-empty and unique, dims non-negative and nbytes == numel * element size.
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The JSON header (space-padded) and the buffer size that write_safetensors would produce.
std::string safetensors_header(const std::vector<TensorView>& tensors,
                               const std::map<std::string, std::string>& metadata,
                               uint64_t* buffer_size = nullptr);

// A safetensors file opened for reading and fully validated on construction.
class SafetensorsFile {
 public:
  enum class Mode { kMmap, kRead };  // map the file read-only, or read it into memory

  explicit SafetensorsFile(const std::string& path, Mode mode = Mode::kMmap);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const;
  const std::vector<std::string>& names() const;  // in buffer order (= write order for Keel files)
  bool has(const std::string& name) const;
  TensorView view(const std::string& name) const;  // throws CheckpointError if absent
  const std::map<std::string, std::string>& metadata() const;
  uint64_t header_size() const;  // N, the JSON header length in bytes

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::checkpoint
