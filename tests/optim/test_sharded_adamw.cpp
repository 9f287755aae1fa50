// The sharded AdamW (ZeRO-1, optim/adamw.h): D optimizers that each own one range of the flat
// parameter space, with every element's owner's value copied to all D replicas after each step (an
// all-gather, done here element by element in one process), equal the unsharded optimizer bit for
// bit; their state adds up to the unsharded state; each parameter's owned segment and its moment
// view are what a checkpoint load fills in place.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "optim/adamw.h"

namespace keel {
namespace {

// Odd shapes so that ranges cut through parameters and the last range is short.
std::vector<torch::Tensor> make_params() {
  torch::manual_seed(7);
  return {torch::randn({7, 5}), torch::randn({5}), torch::randn({3, 11}), torch::randn({1})};
}

const std::vector<std::string> kNames = {"w1", "b1", "w2", "scale"};
const std::vector<bool> kDecay = {true, false, true, false};

std::vector<torch::Tensor> clone_params(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.clone().set_requires_grad(true));
  return out;
}

// The range of rank r of d over n elements: ceil(n / d) each, the last ones short or empty.
FlatRange range_of(int64_t n, int r, int d) {
  const int64_t s = (n + d - 1) / d;
  const int64_t begin = std::min(n, s * r);
  return {begin, std::min(n, begin + s)};
}

TEST(ShardedAdamW, ShardsTogetherEqualTheUnshardedOptimizerBitForBit) {
  const auto initial = make_params();
  int64_t total = 0;
  for (const auto& p : initial) total += p.numel();  // 35 + 5 + 33 + 1 = 74
  AdamWOptions options;
  options.weight_decay = 0.1;
  for (int d : {2, 3, 4, 5}) {
    auto whole_params = clone_params(initial);
    AdamW whole(kNames, whole_params, kDecay, options);
    std::vector<std::vector<torch::Tensor>> replicas;
    std::vector<std::unique_ptr<AdamW>> shards;
    for (int r = 0; r < d; ++r) {
      replicas.push_back(clone_params(initial));
      shards.push_back(std::make_unique<AdamW>(kNames, replicas.back(), kDecay, options, range_of(total, r, d)));
    }
    torch::manual_seed(100 + d);
    for (int step = 1; step <= 6; ++step) {
      std::vector<torch::Tensor> grads;
      for (const auto& p : initial) grads.push_back(torch::randn_like(p) * (step == 3 ? 50.0 : 1.0));
      for (size_t i = 0; i < grads.size(); ++i) whole_params[i].mutable_grad() = grads[i].clone();
      for (auto& replica : replicas)
        for (size_t i = 0; i < grads.size(); ++i) replica[i].mutable_grad() = grads[i].clone();
      const double lr = 1e-2 * step;
      whole.step(lr);
      for (auto& shard : shards) shard->step(lr);
      // The all-gather: each flat element from its owner to every replica.
      torch::NoGradGuard no_grad;
      int64_t offset = 0;
      for (size_t i = 0; i < initial.size(); ++i) {
        for (int64_t e = 0; e < initial[i].numel(); ++e) {
          const int64_t flat = offset + e;
          const int owner = static_cast<int>(flat / ((total + d - 1) / d));
          const float value = replicas[owner][i].view(-1)[e].item<float>();
          for (auto& replica : replicas) replica[i].view(-1)[e] = value;
        }
        offset += initial[i].numel();
      }
      for (int r = 0; r < d; ++r)
        for (size_t i = 0; i < initial.size(); ++i)
          ASSERT_TRUE(torch::equal(replicas[r][i], whole_params[i]))
              << "dp " << d << ", rank " << r << ", parameter " << kNames[i] << ", step " << step;
    }
    int64_t state = 0;
    for (const auto& shard : shards) state += shard->state_bytes();
    EXPECT_EQ(state, whole.state_bytes()) << d;
    EXPECT_EQ(whole.state_bytes(), 2 * total * 4);
    EXPECT_LE(shards[0]->state_bytes(), 2 * 4 * ((total + d - 1) / d)) << d;
  }
}

TEST(ShardedAdamW, SegmentsAreTheOwnedPiecesOfTheNamedTensorsAndLoadInPlace) {
  const auto initial = make_params();
  const int64_t total = 74;
  AdamWOptions options;
  auto whole_params = clone_params(initial);
  AdamW whole(kNames, whole_params, kDecay, options);
  for (size_t i = 0; i < initial.size(); ++i) whole_params[i].mutable_grad() = torch::randn_like(initial[i]);
  whole.step(1e-2);
  // Rank 1 of 3 owns [25, 50): the end of w1, b1, w2's start.
  auto params = clone_params(initial);
  AdamW shard(kNames, params, kDecay, options, range_of(total, 1, 3));
  const std::vector<std::pair<int64_t, int64_t>> expected = {{25, 10}, {0, 5}, {0, 10}, {0, 0}};
  for (size_t i = 0; i < initial.size(); ++i) {
    EXPECT_EQ(shard.segment(i), expected[i]) << kNames[i];
    EXPECT_EQ(whole.segment(i), std::make_pair(int64_t{0}, initial[i].numel())) << kNames[i];
  }
  // A checkpoint load: the owned elements of each whole moment, copied into moment() in place.
  for (int which = 0; which < 2; ++which)
    for (size_t i = 0; i < initial.size(); ++i) {
      const auto [offset, length] = shard.segment(i);
      ASSERT_EQ(shard.moment(which, i).numel(), length);
      shard.moment(which, i).copy_(whole.moment(which, i).reshape(-1).narrow(0, offset, length));
    }
  for (int which = 0; which < 2; ++which) {
    const auto& m = which == 0 ? whole.exp_avg() : whole.exp_avg_sq();
    const torch::Tensor flat_whole = torch::cat({m[0].view(-1), m[1].view(-1), m[2].view(-1), m[3].view(-1)});
    EXPECT_TRUE(torch::equal(shard.flat_moment(which), flat_whole.narrow(0, 25, 25))) << which;
  }
  EXPECT_THROW(shard.moment(2, 0), std::exception);
}

TEST(ShardedAdamW, RefusesARangeOutsideTheParameters) {
  auto params = clone_params(make_params());
  EXPECT_THROW(AdamW(kNames, params, kDecay, AdamWOptions{}, FlatRange{10, 75}), std::exception);
  EXPECT_THROW(AdamW(kNames, params, kDecay, AdamWOptions{}, FlatRange{10, 5}), std::exception);
}

}  // namespace
}  // namespace keel
