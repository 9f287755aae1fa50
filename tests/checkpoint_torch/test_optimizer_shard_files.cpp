// The optimizer files of a checkpoint (checkpoint_torch/optimizer_shard_files.h) in one process:
// flat_pieces() against an element-by-element walk of the flat space; per-DP-rank flat shards hold
// exactly their rank's range and metadata that maps it back to named tensors; moments saved whole
// or sharded over any DP degree load bit for bit into an unsharded optimizer or one sharded over
// any DP degree, across TP degrees too; a missing or foreign shard file is refused naming the file.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "checkpoint_torch/optimizer_shard_files.h"
#include "model/gpt.h"
#include "optim/flat_range.h"

namespace keel {
namespace {

namespace stdfs = std::filesystem;

// The range of rank r of d over n elements (an independent copy of worker/optimizer_sharding.h's).
FlatRange range_of(int64_t n, int r, int d) {
  const int64_t s = (n + d - 1) / d;
  const int64_t begin = std::min(n, s * r);
  return {begin, std::min(n, begin + s)};
}

std::string fresh_dir(const std::string& tag) {
  const auto dir = stdfs::temp_directory_path() / ("keel-optshards-" + tag + "-" + std::to_string(::getpid()));
  stdfs::remove_all(dir);
  stdfs::create_directories(dir);
  return dir.string();
}

TEST(FlatPieces, MapARangeToTheNamedTensorsLikeAnElementWalk) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int64_t> numels;
    const int count = 1 + static_cast<int>(rng() % 6);
    int64_t total = 0;
    for (int i = 0; i < count; ++i) {
      numels.push_back(static_cast<int64_t>(rng() % 9));  // empty tensors too
      total += numels.back();
    }
    const int64_t padded = total + static_cast<int64_t>(rng() % 4);
    const int64_t a = padded ? static_cast<int64_t>(rng() % (padded + 1)) : 0;
    const int64_t b = a + static_cast<int64_t>(rng() % (padded - a + 1));
    // Independently: the owner of every flat position of [a, b), walking tensor by tensor.
    std::vector<std::pair<int64_t, int64_t>> expected;  // (tensor index, element) per position; -1: padding
    for (int64_t p = a; p < b; ++p) {
      int64_t rest = p, index = 0;
      while (index < count && rest >= numels[static_cast<size_t>(index)]) rest -= numels[static_cast<size_t>(index++)];
      expected.push_back(index < count ? std::make_pair(index, rest) : std::make_pair(int64_t{-1}, int64_t{-1}));
    }
    std::vector<std::pair<int64_t, int64_t>> got(static_cast<size_t>(b - a), {-1, -1});
    for (const FlatPiece& piece : flat_pieces(numels, FlatRange{a, b})) {
      ASSERT_GT(piece.length, 0);
      for (int64_t k = 0; k < piece.length; ++k) {
        auto& slot = got.at(static_cast<size_t>(piece.range_offset + k));
        ASSERT_EQ(slot.first, -1) << "position covered twice";
        slot = {static_cast<int64_t>(piece.index), piece.tensor_offset + k};
      }
    }
    ASSERT_EQ(got, expected) << "trial " << trial << ", range [" << a << ", " << b << ")";
    const auto offsets = flat_offsets_of(numels);
    for (size_t i = 0; i < numels.size(); ++i)
      EXPECT_EQ(offsets[i], i == 0 ? 0 : offsets[i - 1] + numels[i - 1]);
  }
}

// Odd shapes (74 elements) so that ranges cut through parameters; names of each TP kind
// (model/tensor_parallel_layout.h): rows, replicated, columns, replicated.
const std::vector<std::string> kNames = {"wte.weight", "ln_f.weight", "blocks.0.attn.c_proj.weight", "ln_f.bias"};
const std::vector<std::vector<int64_t>> kShapes = {{8, 4}, {6}, {3, 10}, {6}};

// Known moments, whole: (which, parameter) -> tensor of kShapes[i].
struct Moments {
  std::vector<torch::Tensor> m[2];
};

Moments random_moments(const std::vector<std::vector<int64_t>>& shapes, int seed) {
  torch::manual_seed(seed);
  Moments out;
  for (int which = 0; which < 2; ++which)
    for (const auto& shape : shapes) out.m[which].push_back(torch::randn(shape).abs_());
  return out;
}

// An optimizer over fresh parameters of `shapes`: unsharded (dp = 0) or rank r of dp (dp >= 1).
struct Opt {
  std::vector<torch::Tensor> params;
  std::unique_ptr<AdamW> adam;
  Opt(const std::vector<std::vector<int64_t>>& shapes, int dp, int r) {
    int64_t total = 0;
    for (const auto& shape : shapes) {
      params.push_back(torch::zeros(shape));
      total += params.back().numel();
    }
    std::optional<FlatRange> owned;
    if (dp >= 1) owned = range_of(total, r, dp);
    adam = std::make_unique<AdamW>(kNames, params, std::vector<bool>(shapes.size(), true), AdamWOptions{}, owned);
  }
  // Sets the owned part of every moment from whole ones.
  void set(const Moments& whole) {
    for (int which = 0; which < 2; ++which)
      for (size_t i = 0; i < params.size(); ++i) {
        const auto [offset, length] = adam->segment(i);
        auto& target = adam->moment(which, i);
        target.copy_(whole.m[which][i].reshape(-1).narrow(0, offset, length).view(target.sizes()));
      }
  }
  // Whether the owned part of every moment equals the whole ones, bit for bit.
  void expect_holds(const Moments& whole, const std::string& what) {
    for (int which = 0; which < 2; ++which)
      for (size_t i = 0; i < params.size(); ++i) {
        const auto [offset, length] = adam->segment(i);
        EXPECT_TRUE(torch::equal(adam->moment(which, i).reshape(-1), whole.m[which][i].reshape(-1).narrow(0, offset, length)))
            << what << ": moment " << which << " of " << kNames[i];
      }
  }
};

// Saves `whole` as TP rank `tp_rank` of `tp` with `dp` files (0: an unsharded optimizer's whole file).
void save(const std::string& dir, const Moments& whole, const std::vector<std::vector<int64_t>>& shapes, int dp,
          int tp_rank = 0, int tp = 1) {
  for (int r = 0; r < std::max(dp, 1); ++r) {
    Opt writer(shapes, dp, r);
    writer.set(whole);
    write_optimizer_file(dir, *writer.adam, tp_rank, tp, r, std::max(dp, 1));
  }
}

TEST(OptimizerShardFiles, EachDpRankWritesItsOwnRangeWithTheParameterMap) {
  const std::string dir = fresh_dir("layout");
  const Moments whole = random_moments(kShapes, 1);
  save(dir, whole, kShapes, 2);
  EXPECT_FALSE(stdfs::exists(dir + "/optimizer.safetensors"));
  for (int d = 0; d < 2; ++d) {
    const std::string name = optimizer_shard_file_name(0, 1, d, 2);
    EXPECT_EQ(name, "optimizer.dp" + std::to_string(d) + "-of-2.safetensors");
    checkpoint::SafetensorsFile file(dir + "/" + name);
    EXPECT_EQ(file.names(), (std::vector<std::string>{"exp_avg", "exp_avg_sq"}));
    EXPECT_EQ(file.view("exp_avg").shape, std::vector<int64_t>{37}) << "half of the 74 elements";
    EXPECT_EQ(file.metadata().at("flat_begin"), std::to_string(37 * d));
    EXPECT_EQ(file.metadata().at("flat_end"), std::to_string(37 * (d + 1)));
    EXPECT_EQ(file.metadata().at("flat_size"), "74");
    EXPECT_EQ(file.metadata().at("padded_flat_size"), "74");
    const auto params = nlohmann::json::parse(file.metadata().at("params"));
    ASSERT_EQ(params.size(), kNames.size());
    EXPECT_EQ(params[2]["name"], kNames[2]);
    EXPECT_EQ(params[2]["offset"], 38);
    EXPECT_EQ(params[2]["shape"], nlohmann::json::array({3, 10}));
    // The file's elements are the named tensors' pieces that flat_pieces() names.
    const float* data = static_cast<const float*>(file.view("exp_avg_sq").data);
    std::vector<int64_t> numels;
    for (const auto& shape : kShapes) numels.push_back(torch::zeros(shape).numel());
    for (const FlatPiece& piece : flat_pieces(numels, range_of(74, d, 2)))
      for (int64_t k = 0; k < piece.length; ++k)
        ASSERT_EQ(data[piece.range_offset + k], whole.m[1][piece.index].reshape(-1)[piece.tensor_offset + k].item<float>());
  }
  // Three ranks: 25 + 25 + 24, the padded space 75.
  const std::string three = fresh_dir("layout3");
  save(three, whole, kShapes, 3);
  checkpoint::SafetensorsFile last(three + "/" + optimizer_shard_file_name(0, 1, 2, 3));
  EXPECT_EQ(last.view("exp_avg").shape, std::vector<int64_t>{24});
  EXPECT_EQ(last.metadata().at("padded_flat_size"), "75");
}

TEST(OptimizerShardFiles, AnySavedLayoutLoadsIntoAnyDpLayoutBitForBit) {
  const Moments whole = random_moments(kShapes, 2);
  for (int saved_dp : {0, 1, 2, 3, 5}) {  // 0: unsharded; 1: sharded over one rank (a whole file too)
    const std::string dir = fresh_dir("reshard-" + std::to_string(saved_dp));
    save(dir, whole, kShapes, saved_dp);
    const int64_t files = saved_dp > 1 ? saved_dp : 1;
    for (int dp : {0, 1, 2, 4}) {
      for (int r = 0; r < std::max(dp, 1); ++r) {
        Opt reader(kShapes, dp, r);
        load_optimizer_files(dir, /*saved_tp=*/1, files, *reader.adam, 0, 1);
        reader.expect_holds(whole, "saved dp " + std::to_string(saved_dp) + " -> dp " + std::to_string(dp) +
                                       " rank " + std::to_string(r));
      }
    }
  }
}

TEST(OptimizerShardFiles, ShardsOfTensorParallelRanksReCutForAnotherTpDegree) {
  // The whole model's moments; TP rank t of 2 holds tensor_parallel_shard() of each.
  const std::vector<std::vector<int64_t>> full_shapes = kShapes;
  const Moments full = random_moments(full_shapes, 3);
  const std::string dir = fresh_dir("tp");
  for (int t = 0; t < 2; ++t) {
    Moments local;
    std::vector<std::vector<int64_t>> local_shapes;
    for (size_t i = 0; i < kNames.size(); ++i) {
      for (int which = 0; which < 2; ++which)
        local.m[which].push_back(tensor_parallel_shard(full.m[which][i], shard_kind(kNames[i]), t, 2).contiguous());
      local_shapes.push_back(local.m[0].back().sizes().vec());
    }
    save(dir, local, local_shapes, /*dp=*/2, t, 2);
  }
  for (int dp : {0, 3}) {
    for (int r = 0; r < std::max(dp, 1); ++r) {
      Opt reader(full_shapes, dp, r);
      load_optimizer_files(dir, /*saved_tp=*/2, /*saved_dp_shards=*/2, *reader.adam, 0, 1);
      reader.expect_holds(full, "tp 2 x dp 2 -> tp 1, dp " + std::to_string(dp) + " rank " + std::to_string(r));
    }
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(OptimizerShardFiles, AMissingOrForeignShardIsRefusedNamingTheFile) {
  const Moments whole = random_moments(kShapes, 4);
  const std::string dir = fresh_dir("errors");
  save(dir, whole, kShapes, 2);
  Opt reader(kShapes, 0, 0);
  stdfs::remove(dir + "/optimizer.dp1-of-2.safetensors");
  std::string error = error_of([&] { load_optimizer_files(dir, 1, 2, *reader.adam, 0, 1); });
  EXPECT_NE(error.find("optimizer.dp1-of-2.safetensors is missing"), std::string::npos) << error;
  EXPECT_NE(error.find("sharded over dp 2"), std::string::npos) << error;
  // Rank 0's file under rank 1's name: its metadata gives it away.
  stdfs::copy_file(dir + "/optimizer.dp0-of-2.safetensors", dir + "/optimizer.dp1-of-2.safetensors");
  error = error_of([&] { load_optimizer_files(dir, 1, 2, *reader.adam, 0, 1); });
  EXPECT_NE(error.find("optimizer.dp1-of-2.safetensors: says it is dp 0 of 2"), std::string::npos) << error;
  // Shards of another model (other shapes) do not load into this one.
  const std::string other = fresh_dir("errors-other");
  save(other, random_moments({{8, 4}, {6}, {3, 11}, {5}}, 5), {{8, 4}, {6}, {3, 11}, {5}}, 2);
  error = error_of([&] { load_optimizer_files(other, 1, 2, *reader.adam, 0, 1); });
  EXPECT_NE(error.find("moments of 'blocks.0.attn.c_proj.weight' have shape [3, 11] but the model expects [3, 10]"),
            std::string::npos)
      << error;
  // A whole-tensor checkpoint read as if sharded (and the other way round) names the file it lacks.
  const std::string whole_dir = fresh_dir("errors-whole");
  save(whole_dir, whole, kShapes, 0);
  error = error_of([&] { load_optimizer_files(whole_dir, 1, 2, *reader.adam, 0, 1); });
  EXPECT_NE(error.find("optimizer.dp0-of-2.safetensors is missing"), std::string::npos) << error;
  error = error_of([&] { load_optimizer_files(other, 1, 1, *reader.adam, 0, 1); });
  EXPECT_NE(error.find("optimizer.safetensors is missing"), std::string::npos) << error;
}

}  // namespace
}  // namespace keel
