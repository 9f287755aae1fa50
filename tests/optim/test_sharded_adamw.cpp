// The sharded AdamW (ZeRO-1, optim/adamw.h): D optimizers that each own one range of the flat
// parameter space, with every element's owner's value copied to all D replicas after each step (an
// all-gather, done here element by element in one process), equal the unsharded optimizer bit for
// bit; their state adds up to the unsharded state; whole moments go out for a save and come back
// sliced on load.
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

TEST(ShardedAdamW, WholeMomentsGoOutForASaveAndComeBackSlicedOnLoad) {
  const auto initial = make_params();
  const int64_t total = 74;
  AdamWOptions options;
  auto whole_params = clone_params(initial);
  AdamW whole(kNames, whole_params, kDecay, options);
  for (size_t i = 0; i < initial.size(); ++i) whole_params[i].mutable_grad() = torch::randn_like(initial[i]);
  whole.step(1e-2);
  // Load the whole optimizer's moments into rank 1 of 3 through the checkpoint interface.
  auto params = clone_params(initial);
  AdamW shard(kNames, params, kDecay, options, range_of(total, 1, 3));  // [25, 50): the end of w1, b1, w2's start
  EXPECT_THROW(shard.moment_for_save(0, 0), std::exception) << "a sharded save needs gathered moments";
  for (int which = 0; which < 2; ++which)
    for (size_t i = 0; i < initial.size(); ++i) {
      torch::Tensor& target = shard.moment_load_target(which, i);
      ASSERT_EQ(target.sizes(), initial[i].sizes());
      target.copy_(whole.moment_for_save(which, i));
    }
  shard.finish_moment_load();
  const torch::Tensor flat_whole = torch::cat({whole.exp_avg()[0].view(-1), whole.exp_avg()[1].view(-1),
                                              whole.exp_avg()[2].view(-1), whole.exp_avg()[3].view(-1)});
  EXPECT_TRUE(torch::equal(shard.flat_moment(0), flat_whole.narrow(0, 25, 25)));
  EXPECT_EQ(shard.exp_avg()[0].numel(), 10);  // w1's elements 25..34
  EXPECT_EQ(shard.exp_avg()[1].numel(), 5);   // b1 whole
  EXPECT_EQ(shard.exp_avg()[2].numel(), 10);  // w2's elements 0..9
  EXPECT_EQ(shard.exp_avg()[3].numel(), 0);   // scale: not owned
  // A save sees whole tensors again once the caller handed them over.
  std::vector<torch::Tensor> m, v;
  for (size_t i = 0; i < initial.size(); ++i) {
    m.push_back(whole.moment_for_save(0, i).clone());
    v.push_back(whole.moment_for_save(1, i).clone());
  }
  shard.set_gathered_moments(m, v);
  EXPECT_TRUE(torch::equal(shard.moment_for_save(1, 2), whole.exp_avg_sq()[2]));
  shard.release_gathered_moments();
  EXPECT_THROW(shard.moment_for_save(0, 0), std::exception);
}

TEST(ShardedAdamW, RefusesARangeOutsideTheParameters) {
  auto params = clone_params(make_params());
  EXPECT_THROW(AdamW(kNames, params, kDecay, AdamWOptions{}, FlatRange{10, 75}), std::exception);
  EXPECT_THROW(AdamW(kNames, params, kDecay, AdamWOptions{}, FlatRange{10, 5}), std::exception);
}

}  // namespace
}  // namespace keel
