// The flat parameter space of the sharded optimizer (ZeRO-1, optim/adamw.h) as plain arithmetic:
// the parameters, each flattened and concatenated in order, form one space; a DP rank owns one
// range [begin, end) of it. flat_pieces() maps a range back to the named tensors it cuts through,
// which both the optimizer's segments and the per-DP-rank optimizer checkpoint files
// (checkpoint_torch/optimizer_shard_files.h) rely on. Torch-free, header only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace keel {

// A range [begin, end) of the flat parameter space.
struct FlatRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// One tensor's piece of a flat range: elements [tensor_offset, tensor_offset + length) of tensor
// `index` (flattened) sit at [range_offset, range_offset + length) of the range.
struct FlatPiece {
  size_t index = 0;
  int64_t tensor_offset = 0;
  int64_t range_offset = 0;
  int64_t length = 0;
};

// Where each tensor starts in the flat space, from the tensors' element counts (in order).
inline std::vector<int64_t> flat_offsets_of(const std::vector<int64_t>& numels) {
  std::vector<int64_t> offsets;
  int64_t next = 0;
  for (int64_t n : numels) {
    offsets.push_back(next);
    next += n;
  }
  return offsets;
}

// The non-empty pieces of the tensors (element counts `numels`, flattened in order) that `range`
// covers, in flat order. Positions past the last tensor (padding) belong to no piece.
inline std::vector<FlatPiece> flat_pieces(const std::vector<int64_t>& numels, FlatRange range) {
  std::vector<FlatPiece> pieces;
  int64_t offset = 0;
  for (size_t i = 0; i < numels.size(); ++i) {
    const int64_t a = std::max(range.begin, offset), b = std::min(range.end, offset + numels[i]);
    if (a < b) pieces.push_back({i, a - offset, a - range.begin, b - a});
    offset += numels[i];
  }
  return pieces;
}

}  // namespace keel
