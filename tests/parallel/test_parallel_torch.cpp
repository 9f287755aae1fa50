// Single-process tests of the Torch adapter: dtype mapping, tensor checks, world-of-one collectives,
// and GradientBucketer's bucket layout and bookkeeping (the multi-rank averaging is in
// test_mpi_collectives).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "common/check.h"
#include "parallel/communicator.h"
#include "parallel/gradient_bucketer.h"
#include "parallel/torch_adapter.h"

namespace keel::parallel {
namespace {

TEST(TorchAdapter, DataTypes) {
  EXPECT_EQ(to_data_type(torch::kFloat), DataType::kFloat32);
  EXPECT_EQ(to_data_type(torch::kBFloat16), DataType::kBFloat16);
  EXPECT_EQ(to_data_type(torch::kHalf), DataType::kFloat16);
  EXPECT_EQ(to_data_type(torch::kDouble), DataType::kFloat64);
  EXPECT_EQ(to_data_type(torch::kLong), DataType::kInt64);
  EXPECT_EQ(to_data_type(torch::kInt), DataType::kInt32);
  EXPECT_EQ(to_data_type(torch::kByte), DataType::kUInt8);
  EXPECT_THROW(to_data_type(torch::kBool), KeelError);
}

TEST(TorchAdapter, WorldOfOne) {
  SingleProcessCommunicator comm;
  torch::Tensor t = torch::arange(6, torch::kFloat);
  all_reduce(comm, t, ReduceOp::kAvg);
  EXPECT_TRUE(t.equal(torch::arange(6, torch::kFloat)));
  torch::Tensor gathered = all_gather(comm, t.view({2, 3}));
  EXPECT_EQ(gathered.sizes(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_TRUE(gathered.view({6}).equal(t));
  torch::Tensor out = torch::empty({6});
  reduce_scatter(comm, t, out, ReduceOp::kSum);
  EXPECT_TRUE(out.equal(t));
  broadcast(comm, t, 0);
  torch::Tensor strided = torch::ones({4, 4}).t().narrow(0, 0, 2);
  EXPECT_THROW(all_reduce(comm, strided, ReduceOp::kSum), KeelError);
  torch::Tensor flags = torch::ones({3}, torch::kBool);
  EXPECT_THROW(all_reduce(comm, flags, ReduceOp::kSum), KeelError);
  torch::Tensor small = torch::empty({5});
  EXPECT_THROW(all_gather(comm, t, small), KeelError);
}

TEST(GradientBucketer, LayoutReverseOrderAndDtypes) {
  SingleProcessCommunicator comm;
  // 1 MiB buckets: 4 float params of 128 Ki floats (0.5 MiB each) -> 2 buckets of 2, plus a bf16
  // bucket and a skipped frozen parameter.
  std::vector<torch::Tensor> params;
  for (int i = 0; i < 4; ++i) params.push_back(torch::zeros({128 * 1024}, torch::requires_grad()));
  params.push_back(torch::zeros({10}, torch::TensorOptions().dtype(torch::kBFloat16).requires_grad(true)));
  params.push_back(torch::zeros({10}));  // frozen
  GradientBucketer bucketer(comm, params, 1.0);
  ASSERT_EQ(bucketer.num_buckets(), 3u);
  EXPECT_EQ(bucketer.bucket_params(0), (std::vector<size_t>{4}));
  EXPECT_EQ(bucketer.bucket_params(1), (std::vector<size_t>{3, 2}));
  EXPECT_EQ(bucketer.bucket_params(2), (std::vector<size_t>{1, 0}));
}

TEST(GradientBucketer, SingleProcessKeepsGradients) {
  SingleProcessCommunicator comm;
  torch::manual_seed(0);
  auto w = torch::randn({8, 4}, torch::requires_grad());
  auto b = torch::randn({4}, torch::requires_grad());
  auto unused = torch::randn({3}, torch::requires_grad());
  auto x = torch::randn({5, 8});
  (torch::matmul(x, w) + b).pow(2).sum().backward();
  auto w_grad = w.grad().clone();
  auto b_grad = b.grad().clone();
  GradientBucketer bucketer(comm, {w, b, unused}, 0.0001);  // ~104 bytes: w (128 B) alone, b + unused together
  ASSERT_EQ(bucketer.num_buckets(), 2u);
  EXPECT_EQ(bucketer.bucket_params(0), (std::vector<size_t>{2, 1}));
  EXPECT_EQ(bucketer.bucket_params(1), (std::vector<size_t>{0}));
  bucketer.all_reduce_gradients();
  EXPECT_TRUE(torch::allclose(w.grad(), w_grad));
  EXPECT_TRUE(torch::allclose(b.grad(), b_grad));
  ASSERT_TRUE(unused.grad().defined());  // no gradient on this rank: zeros
  EXPECT_EQ(unused.grad().abs().sum().item<float>(), 0.0f);
}

TEST(GradientBucketer, HookBookkeeping) {
  SingleProcessCommunicator comm;
  auto w = torch::randn({4, 4}, torch::requires_grad());
  auto b = torch::randn({4}, torch::requires_grad());
  GradientBucketer bucketer(comm, {w, b}, 25.0);
  ASSERT_EQ(bucketer.num_buckets(), 1u);
  // Hooks see the gradient before accumulation; the bucketer copies it there.
  w.register_hook([&](torch::Tensor g) { bucketer.on_grad_ready(0, g); return g; });
  b.register_hook([&](torch::Tensor g) { bucketer.on_grad_ready(1, g); return g; });
  auto x = torch::randn({3, 4});
  (torch::matmul(x, w) + b).sum().backward();
  auto expected_w = w.grad().clone();
  auto expected_b = b.grad().clone();
  bucketer.finish();
  EXPECT_TRUE(torch::allclose(w.grad(), expected_w));
  EXPECT_TRUE(torch::allclose(b.grad(), expected_b));
  // Reporting the same gradient twice in one step is a bug in the caller.
  bucketer.on_grad_ready(0);
  EXPECT_THROW(bucketer.on_grad_ready(0), KeelError);
  bucketer.finish();  // resets for the next step
  EXPECT_NO_THROW(bucketer.on_grad_ready(0));
  bucketer.finish();
}

}  // namespace
}  // namespace keel::parallel
