// How each GPT parameter is split across tensor-parallel ranks (Megatron-style), by parameter name.
// Torch-free, so checkpoint tools and tests can reassemble full tensors from TP shards.
//
//   wte.weight, lm_head.weight               rows      vocab-parallel: rank r holds V/tp rows
//   blocks.i.attn.c_attn.{weight,bias}       qkv_rows  column-parallel: rank r holds its heads'
//                                                      rows of each of q, k and v
//   blocks.i.mlp.{c_fc,w_gate,w_up}.*        rows      column-parallel: hidden/tp rows
//   blocks.i.{attn,mlp}.c_proj.weight        columns   row-parallel: input columns split
//   blocks.i.attn.supra.*                    rows      linear attention's per-head parameters: the
//                                                      heads' rows (phi (H, D, D), GroupNorm (H*D))
//   everything else (norms, wpe, c_proj.bias) replicated: identical on every TP rank
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel {

enum class ShardKind { kReplicated, kRows, kQkvRows, kColumns };

inline bool name_ends_with(const std::string& name, const std::string& suffix) {
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline ShardKind shard_kind(const std::string& name) {
  if (name == "wte.weight" || name == "lm_head.weight") return ShardKind::kRows;
  if (name.find(".attn.c_attn.") != std::string::npos) return ShardKind::kQkvRows;
  if (name.find(".attn.supra.") != std::string::npos) return ShardKind::kRows;
  if (name.find(".mlp.c_fc.") != std::string::npos || name.find(".mlp.w_gate.") != std::string::npos ||
      name.find(".mlp.w_up.") != std::string::npos)
    return ShardKind::kRows;
  if (name_ends_with(name, ".c_proj.weight")) return ShardKind::kColumns;
  return ShardKind::kReplicated;
}

// File-name suffix of a TP shard: "" for tp = 1 (model.safetensors), ".tp1-of-2" otherwise.
inline std::string shard_suffix(int64_t tp_rank, int64_t tp_size) {
  if (tp_size == 1) return "";
  return ".tp" + std::to_string(tp_rank) + "-of-" + std::to_string(tp_size);
}

}  // namespace keel
