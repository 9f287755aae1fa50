// The optimizer files of a checkpoint: writing whole tensors or this rank's flat shard, and loading
// either layout into any optimizer layout (see optimizer_shard_files.h).
#include "checkpoint_torch/optimizer_shard_files.h"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <vector>

#include "checkpoint/safetensors.h"
#include "checkpoint_torch/tensor_io.h"
#include "common/check.h"
#include "common/fs.h"
#include "model/gpt.h"

namespace keel {
using checkpoint::SafetensorsFile;
namespace {

constexpr const char* kShardFormat = "keel-optimizer-shard";
const char* const kMomentNames[2] = {"exp_avg", "exp_avg_sq"};

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// The params metadata of a flat shard: every parameter's name, shape and flat offset, in order.
std::string params_json(const AdamW& optimizer) {
  nlohmann::json params = nlohmann::json::array();
  for (size_t i = 0; i < optimizer.names().size(); ++i)
    params.push_back({{"name", optimizer.names()[i]},
                      {"shape", optimizer.params()[i].sizes().vec()},
                      {"offset", optimizer.flat_offset(i)}});
  return params.dump();
}

const std::string& meta(const SafetensorsFile& file, const std::string& key) {
  const auto& metadata = file.metadata();
  auto it = metadata.find(key);
  KEEL_CHECK(it != metadata.end(), file.path() << ": metadata '" << key << "' is missing (not a Keel optimizer shard)");
  return it->second;
}

int64_t meta_int(const SafetensorsFile& file, const std::string& key) {
  const std::string& text = meta(file, key);
  try {
    size_t used = 0;
    const int64_t value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  KEEL_CHECK(false, file.path() << ": metadata '" << key << "' is not an integer: '" << text << "'");
}

std::unique_ptr<SafetensorsFile> open_file(const std::string& dir, const std::string& name, const std::string& why) {
  const std::string path = dir + "/" + name;
  KEEL_CHECK(fs::exists(path), path << " is missing (" << why << ")");
  return std::make_unique<SafetensorsFile>(path);
}

// What one saved TP rank wrote: one whole-tensor file, or flat shards over its DP ranks.
class SavedMoments {
 public:
  SavedMoments(const std::string& dir, int64_t tp_rank, int64_t tp_size, int64_t dp_shards) {
    KEEL_CHECK(dp_shards >= 1, dir << "/trainer_state.json: bad layout.optimizer_dp_shards " << dp_shards);
    if (dp_shards == 1) {
      files_.push_back(open_file(dir, optimizer_file_name(tp_rank, tp_size), "the optimizer's whole moments"));
      return;
    }
    flat_ = true;
    for (int64_t d = 0; d < dp_shards; ++d)
      files_.push_back(open_file(dir, optimizer_shard_file_name(tp_rank, tp_size, d, dp_shards),
                                 "the checkpoint's optimizer is sharded over dp " + std::to_string(dp_shards)));
    read_flat_layout(tp_rank, tp_size, dp_shards);
  }

  // The first of its files (for error messages).
  const std::string& path() const { return files_[0]->path(); }

  // Parameter `name`'s shape as saved.
  std::vector<int64_t> shape(const std::string& name) const {
    if (!flat_) {
      KEEL_CHECK(files_[0]->has("exp_avg." + name),
                 files_[0]->path() << ": tensor 'exp_avg." << name << "' is missing");
      return files_[0]->view("exp_avg." + name).shape;
    }
    auto it = params_.find(name);
    KEEL_CHECK(it != params_.end(), files_[0]->path() << ": parameter '" << name << "' is not in the shard's params");
    return it->second.second;
  }

  // Elements [offset, offset + length) of moment `which` of parameter `name`, flattened: (length).
  torch::Tensor read(int which, const std::string& name, int64_t offset, int64_t length, torch::ScalarType type) const {
    const int64_t numel = numel_of(shape(name));
    KEEL_CHECK(offset >= 0 && length >= 0 && offset + length <= numel,
               files_[0]->path() << ": elements [" << offset << ", " << offset + length << ") of '" << name
                                 << "' requested, it has " << numel);
    if (!flat_) {
      const std::string key = std::string(kMomentNames[which]) + "." + name;
      return tensor_in(*files_[0], key, type).reshape(-1).narrow(0, offset, length);
    }
    torch::Tensor out = torch::empty({length}, torch::TensorOptions().dtype(type));  // (length)
    const int64_t begin = params_.at(name).first + offset;
    const FlatRange wanted{begin, begin + length};
    int64_t filled = 0;
    for (size_t d = 0; d < files_.size(); ++d) {
      const int64_t a = std::max(wanted.begin, ranges_[d].begin), b = std::min(wanted.end, ranges_[d].end);
      if (a >= b) continue;  // this DP rank's range does not overlap: its bytes are never touched
      const torch::Tensor flat = tensor_in(*files_[d], kMomentNames[which], type);  // (range size)
      out.narrow(0, a - wanted.begin, b - a).copy_(flat.narrow(0, a - ranges_[d].begin, b - a));
      filled += b - a;
    }
    KEEL_CHECK(filled == length, files_[0]->path() << ": the shards cover " << filled << " of " << length
                                                   << " elements of '" << name << "'");
    return out;
  }

 private:
  // Checks the shards' metadata against each other (same parameters, ranges that tile the space)
  // and keeps the parameter map.
  void read_flat_layout(int64_t tp_rank, int64_t tp_size, int64_t dp_shards) {
    const SafetensorsFile& first = *files_[0];
    const std::string& params_text = meta(first, "params");
    const int64_t flat_size = meta_int(first, "flat_size");
    int64_t next = 0;
    for (size_t d = 0; d < files_.size(); ++d) {
      const SafetensorsFile& file = *files_[d];
      KEEL_CHECK(meta(file, "format") == kShardFormat, file.path() << ": format '" << meta(file, "format")
                                                                  << "', expected '" << kShardFormat << "'");
      KEEL_CHECK(meta_int(file, "dp_rank") == static_cast<int64_t>(d) && meta_int(file, "dp_size") == dp_shards &&
                     meta_int(file, "tp_rank") == tp_rank && meta_int(file, "tp_size") == tp_size,
                 file.path() << ": says it is dp " << meta(file, "dp_rank") << " of " << meta(file, "dp_size")
                             << ", tp " << meta(file, "tp_rank") << " of " << meta(file, "tp_size")
                             << "; its name says dp " << d << " of " << dp_shards << ", tp " << tp_rank << " of "
                             << tp_size);
      KEEL_CHECK(meta(file, "params") == params_text && meta_int(file, "flat_size") == flat_size,
                 file.path() << ": its parameter list differs from that of " << first.path());
      const FlatRange range{meta_int(file, "flat_begin"), meta_int(file, "flat_end")};
      KEEL_CHECK(range.begin == next && range.begin <= range.end && range.end <= flat_size,
                 file.path() << ": flat range [" << range.begin << ", " << range.end << ") does not continue at "
                             << next << " (of " << flat_size << ")");
      for (const char* moment : kMomentNames) {
        KEEL_CHECK(file.has(moment), file.path() << ": tensor '" << moment << "' is missing");
        KEEL_CHECK(file.view(moment).shape == std::vector<int64_t>{range.size()},
                   file.path() << ": tensor '" << moment << "' does not hold the " << range.size()
                               << " elements of its range");
      }
      ranges_.push_back(range);
      next = range.end;
    }
    KEEL_CHECK(next == flat_size, files_.back()->path() << ": the shards end at " << next << " of " << flat_size);
    nlohmann::json params = nlohmann::json::parse(params_text, nullptr, /*allow_exceptions=*/false);
    KEEL_CHECK(params.is_array(), first.path() << ": metadata 'params' is not a JSON array");
    int64_t offset = 0;
    try {
      for (const auto& p : params) {
        auto shape = p.at("shape").get<std::vector<int64_t>>();
        KEEL_CHECK(p.at("offset").get<int64_t>() == offset,
                   first.path() << ": parameter '" << p.at("name").get<std::string>() << "' at flat offset "
                                << p.at("offset").get<int64_t>() << ", expected " << offset);
        params_[p.at("name").get<std::string>()] = {offset, shape};
        offset += numel_of(shape);
      }
    } catch (const nlohmann::json::exception& e) {
      KEEL_CHECK(false, first.path() << ": metadata 'params': " << e.what());
    }
    KEEL_CHECK(offset == flat_size, first.path() << ": the parameters have " << offset << " elements, flat_size "
                                                 << flat_size);
  }

  std::vector<std::unique_ptr<SafetensorsFile>> files_;  // the whole file, or the shards by DP rank
  bool flat_ = false;
  std::vector<FlatRange> ranges_;  // flat: DP rank d's range
  std::map<std::string, std::pair<int64_t, std::vector<int64_t>>> params_;  // flat: name -> (offset, shape)
};

}  // namespace

std::string optimizer_file_name(int64_t tp_rank, int64_t tp_size) {
  return "optimizer" + shard_suffix(tp_rank, tp_size) + ".safetensors";
}

std::string optimizer_shard_file_name(int64_t tp_rank, int64_t tp_size, int64_t dp_rank, int64_t dp_size) {
  return "optimizer" + shard_suffix(tp_rank, tp_size) + ".dp" + std::to_string(dp_rank) + "-of-" +
         std::to_string(dp_size) + ".safetensors";
}

int64_t optimizer_dp_shards(const AdamW& optimizer, int64_t dp_size) {
  return optimizer.sharded() && dp_size > 1 ? dp_size : 1;
}

std::string write_optimizer_file(const std::string& dir, const AdamW& optimizer, int64_t tp_rank, int64_t tp_size,
                                 int64_t dp_rank, int64_t dp_size) {
  const auto& names = optimizer.names();
  const std::map<std::string, std::string> common = {{"step_count", std::to_string(optimizer.step_count())}};
  if (optimizer_dp_shards(optimizer, dp_size) == 1) {
    TensorBundle whole;
    for (size_t i = 0; i < names.size(); ++i) {
      const torch::Tensor& param = optimizer.params()[i];
      const auto [offset, length] = optimizer.segment(i);
      KEEL_CHECK(offset == 0 && length == param.numel(),
                 "optimizer checkpoint: a whole-tensor file needs every element, but this optimizer owns elements ["
                     << offset << ", " << offset + length << ") of '" << names[i] << "'");
      for (int which = 0; which < 2; ++which)
        whole.add(std::string(kMomentNames[which]) + "." + names[i], optimizer.moment(which, i).view(param.sizes()));
    }
    const std::string name = optimizer_file_name(tp_rank, tp_size);
    checkpoint::write_safetensors(dir + "/" + name, whole.views, common);
    return name;
  }
  const FlatRange owned = optimizer.owned_range();
  const int64_t total = optimizer.flat_size(), per_rank = (total + dp_size - 1) / dp_size;
  const int64_t expected_begin = std::min(total, per_rank * dp_rank);
  KEEL_CHECK(owned.begin == expected_begin && owned.end == std::min(total, expected_begin + per_rank),
             "optimizer checkpoint: DP rank " << dp_rank << " of " << dp_size << " owns [" << owned.begin << ", "
                                              << owned.end << ") of " << total << ", not its share");
  TensorBundle flat;
  for (int which = 0; which < 2; ++which) flat.add(kMomentNames[which], optimizer.flat_moment(which));  // (owned)
  std::map<std::string, std::string> metadata = common;
  metadata.insert({{"format", kShardFormat},
                   {"tp_rank", std::to_string(tp_rank)},
                   {"tp_size", std::to_string(tp_size)},
                   {"dp_rank", std::to_string(dp_rank)},
                   {"dp_size", std::to_string(dp_size)},
                   {"flat_begin", std::to_string(owned.begin)},
                   {"flat_end", std::to_string(owned.end)},
                   {"flat_size", std::to_string(total)},
                   {"padded_flat_size", std::to_string(per_rank * dp_size)},
                   {"params", params_json(optimizer)}});
  const std::string name = optimizer_shard_file_name(tp_rank, tp_size, dp_rank, dp_size);
  checkpoint::write_safetensors(dir + "/" + name, flat.views, metadata);
  return name;
}

void load_optimizer_files(const std::string& dir, int64_t saved_tp, int64_t saved_dp_shards, AdamW& optimizer,
                          int64_t tp_rank, int64_t tp_size) {
  const bool same_tp = saved_tp == tp_size;
  // The saved TP ranks this rank reads: its own (same TP degree), else all of them (re-cut).
  std::vector<std::unique_ptr<SavedMoments>> saved(static_cast<size_t>(saved_tp));
  auto source = [&](int64_t r) -> const SavedMoments& {
    auto& s = saved.at(static_cast<size_t>(r));
    if (!s) s = std::make_unique<SavedMoments>(dir, r, saved_tp, saved_dp_shards);
    return *s;
  };
  torch::NoGradGuard no_grad;
  const auto& names = optimizer.names();
  for (size_t i = 0; i < names.size(); ++i) {
    const torch::Tensor& param = optimizer.params()[i];
    const auto type = param.scalar_type();
    const auto [offset, length] = optimizer.segment(i);
    const ShardKind kind = shard_kind(names[i]);
    const int64_t from = same_tp ? tp_rank : 0;  // with another TP degree, a replicated tensor is rank 0's
    if (same_tp || kind == ShardKind::kReplicated) {
      const auto shape = source(from).shape(names[i]);
      KEEL_CHECK(shape == param.sizes().vec(),
                 source(from).path() << ": moments of '" << names[i] << "' have shape " << torch::IntArrayRef(shape)
                        << " but the model expects " << param.sizes());
    }
    if (length == 0) continue;  // nothing of this parameter is owned here
    for (int which = 0; which < 2; ++which) {
      torch::Tensor part;  // (length) the owned elements of the moment, flattened
      if (same_tp || kind == ShardKind::kReplicated) {
        part = source(from).read(which, names[i], offset, length, type);
      } else {
        std::vector<torch::Tensor> pieces;
        for (int64_t r = 0; r < saved_tp; ++r) {
          const auto shape = source(r).shape(names[i]);
          pieces.push_back(source(r).read(which, names[i], 0, numel_of(shape), type).view(shape));
        }
        const torch::Tensor mine = tensor_parallel_shard(tensor_parallel_unshard(pieces, kind), kind, tp_rank, tp_size);
        KEEL_CHECK(mine.sizes() == param.sizes(),
                   source(0).path() << ": moments of '" << names[i] << "' saved with parallel.tp=" << saved_tp << " re-cut to "
                          << mine.sizes() << " for parallel.tp=" << tp_size << " but the model expects "
                          << param.sizes());
        part = mine.contiguous().view(-1).narrow(0, offset, length);
      }
      torch::Tensor& target = optimizer.moment(which, i);  // whole-shaped, or the owned segment (1-D)
      target.copy_(part.view(target.sizes()));
    }
  }
}

}  // namespace keel
