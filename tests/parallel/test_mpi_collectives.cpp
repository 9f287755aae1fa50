// Real multi-process test of the MPI backend and the Torch adapter, run under mpirun (-np 4 and
// -np 2; registered with CTest in tests/parallel/CMakeLists.txt). Not a gtest binary: each rank runs
// every check, prints one line per failure and a summary, and the program returns non-zero on any
// mismatch (mpirun then fails).
//
// Checks: all_reduce sum/avg/max/min (float32, int64), all_gather and reduce_scatter (also in place),
// broadcast, barrier, split into dp x tp groups (dp=2 x tp=2 on 4 ranks, dp=2 x tp=1 on 2), bf16 and
// f16 sums through the Torch adapter, and GradientBucketer's average over the dp group against the
// mean of every dp rank's gradients computed locally.
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "common/check.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "parallel/gradient_bucketer.h"
#include "parallel/torch_adapter.h"

using namespace keel::parallel;

namespace {

int g_rank = 0;
int g_failures = 0;
int g_checks = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("[rank %d] FAIL: %s\n", g_rank, what.c_str());
    std::fflush(stdout);
  }
}

void test_raw_collectives(Communicator& world) {
  const int rank = world.rank(), size = world.size();
  const size_t n = 5;
  // all_reduce float32 sum / avg / max / min.
  std::vector<float> sum(n), avg(n), mx(n), mn(n);
  for (size_t i = 0; i < n; ++i) sum[i] = avg[i] = mx[i] = mn[i] = static_cast<float>(rank + 1) * static_cast<float>(i + 1);
  world.all_reduce(sum.data(), n, DataType::kFloat32, ReduceOp::kSum);
  world.all_reduce(avg.data(), n, DataType::kFloat32, ReduceOp::kAvg);
  world.all_reduce(mx.data(), n, DataType::kFloat32, ReduceOp::kMax);
  world.all_reduce(mn.data(), n, DataType::kFloat32, ReduceOp::kMin);
  const float tri = static_cast<float>(size * (size + 1) / 2);
  for (size_t i = 0; i < n; ++i) {
    const float scale = static_cast<float>(i + 1);
    check(sum[i] == tri * scale, "all_reduce sum float32");
    check(std::abs(avg[i] - tri * scale / static_cast<float>(size)) < 1e-5f, "all_reduce avg float32");
    check(mx[i] == static_cast<float>(size) * scale, "all_reduce max float32");
    check(mn[i] == scale, "all_reduce min float32");
  }
  // int64 sum and (integer) avg.
  std::vector<int64_t> ints{rank, 10 * rank, 1000000000000LL};
  std::vector<int64_t> int_avg = ints;
  world.all_reduce(ints.data(), 3, DataType::kInt64, ReduceOp::kSum);
  world.all_reduce(int_avg.data(), 3, DataType::kInt64, ReduceOp::kAvg);
  const int64_t ranks_sum = static_cast<int64_t>(size) * (size - 1) / 2;
  check(ints[0] == ranks_sum && ints[1] == 10 * ranks_sum && ints[2] == 1000000000000LL * size, "all_reduce sum int64");
  check(int_avg[0] == ranks_sum / size && int_avg[2] == 1000000000000LL, "all_reduce avg int64");

  // all_gather: block r holds rank r's values.
  const size_t count = 3;
  std::vector<int32_t> send(count), gathered(count * size, -1);
  for (size_t j = 0; j < count; ++j) send[j] = rank * 100 + static_cast<int32_t>(j);
  world.all_gather(send.data(), gathered.data(), count, DataType::kInt32);
  bool gather_ok = true;
  for (int r = 0; r < size; ++r)
    for (size_t j = 0; j < count; ++j) gather_ok &= gathered[r * count + j] == r * 100 + static_cast<int32_t>(j);
  check(gather_ok, "all_gather int32");
  std::vector<int32_t> in_place(count * size, -1);
  for (size_t j = 0; j < count; ++j) in_place[rank * count + j] = send[j];
  world.all_gather(in_place.data() + rank * count, in_place.data(), count, DataType::kInt32);
  check(in_place == gathered, "all_gather in place");

  // reduce_scatter: rank r gets sum over ranks of block r.
  std::vector<float> full(count * size), part(count);
  for (size_t k = 0; k < full.size(); ++k) full[k] = static_cast<float>(rank) + static_cast<float>(k);
  std::vector<float> full_copy = full;
  world.reduce_scatter(full.data(), part.data(), count, DataType::kFloat32, ReduceOp::kSum);
  bool rs_ok = true;
  for (size_t j = 0; j < count; ++j) {
    const float k = static_cast<float>(rank * count + j);
    rs_ok &= part[j] == static_cast<float>(size) * k + static_cast<float>(ranks_sum);
  }
  check(rs_ok, "reduce_scatter sum float32");
  world.reduce_scatter(full_copy.data(), full_copy.data() + rank * count, count, DataType::kFloat32, ReduceOp::kSum);
  check(std::vector<float>(full_copy.begin() + rank * count, full_copy.begin() + (rank + 1) * count) == part,
        "reduce_scatter in place");

  // broadcast from the last rank.
  std::vector<double> value{static_cast<double>(rank), -1.0};
  world.broadcast(value.data(), 2, DataType::kFloat64, size - 1);
  check(value[0] == size - 1 && value[1] == -1.0, "broadcast float64");
  bool threw = false;
  try {
    world.broadcast(value.data(), 2, DataType::kFloat64, size);
  } catch (const keel::KeelError&) {
    threw = true;
  }
  check(threw, "broadcast with a bad root throws");
  world.barrier();

  // split with a negative color leaves a rank out; abort makes the communicator unusable.
  auto odd = world.split(rank % 2 == 1 ? 0 : -1, rank);
  check((rank % 2 == 1) == (odd != nullptr), "split with negative color");
  auto copy = world.split(0, -rank);  // reversed order by key
  check(copy && copy->rank() == size - 1 - rank, "split orders by key");
  copy->abort();
  threw = false;
  try {
    copy->barrier();
  } catch (const keel::KeelError&) {
    threw = true;
  }
  check(threw, "calls after abort() throw");
}

void test_groups(Communicator& world, ProcessGroups& groups, int64_t dp, int64_t tp) {
  const int rank = world.rank();
  check(groups.dp_rank() == rank / tp && groups.tp_rank() == rank % tp, "grid position");
  check(groups.dp().size() == dp && groups.tp().size() == tp, "group sizes");
  check(groups.dp().rank() == groups.dp_rank() && groups.tp().rank() == groups.tp_rank(), "group ranks");
  // Sum of world ranks within each group identifies its members.
  int64_t in_tp = rank, in_dp = rank;
  groups.tp().all_reduce(&in_tp, 1, DataType::kInt64, ReduceOp::kSum);
  groups.dp().all_reduce(&in_dp, 1, DataType::kInt64, ReduceOp::kSum);
  const int64_t d = groups.dp_rank(), t = groups.tp_rank();
  check(in_tp == d * tp * tp + tp * (tp - 1) / 2, "tp group members (adjacent ranks)");
  check(in_dp == tp * dp * (dp - 1) / 2 + dp * t, "dp group members (stride tp)");
}

void test_half_sums(Communicator& world) {
  const int size = world.size();
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    auto values_of = [&](int r) {
      return (torch::arange(64, torch::kFloat) * 0.37f + static_cast<float>(r) * 1.3f - 5.0f).to(dtype);
    };
    torch::Tensor t = values_of(world.rank());
    all_reduce(world, t, ReduceOp::kSum);
    torch::Tensor expected = torch::zeros({64}, torch::kDouble);
    for (int r = 0; r < size; ++r) expected += values_of(r).to(torch::kDouble);
    check(t.scalar_type() == dtype, "16-bit all_reduce keeps the dtype");
    const double rel = dtype == torch::kBFloat16 ? 1.0 / 128 : 1.0 / 1024;
    const bool close = torch::allclose(t.to(torch::kDouble), expected, rel, 0.05);
    check(close, std::string("16-bit all_reduce sum within tolerance: ") + c10::toString(dtype));
    torch::Tensor avg = values_of(world.rank());
    all_reduce(world, avg, ReduceOp::kAvg);
    check(torch::allclose(avg.to(torch::kDouble), expected / size, rel, 0.05), "16-bit all_reduce avg");
    torch::Tensor gathered = all_gather(world, values_of(world.rank()));
    bool gather_ok = true;
    for (int r = 0; r < size; ++r) gather_ok &= gathered[r].equal(values_of(r));
    check(gather_ok, "16-bit all_gather is bit-exact");
  }
}

// A small MLP; every rank builds the same weights, each dp rank has its own data.
struct Net {
  torch::Tensor w1, b1, w2, b2;
  Net() {
    torch::manual_seed(1234);
    w1 = torch::randn({16, 32}, torch::requires_grad());
    b1 = torch::zeros({32}, torch::requires_grad());
    w2 = torch::randn({32, 4}, torch::requires_grad());
    b2 = torch::zeros({4}, torch::requires_grad());
  }
  std::vector<torch::Tensor> params() const { return {w1, b1, w2, b2}; }
  void backward_on(int data_rank) {
    torch::manual_seed(100 + data_rank);
    auto x = torch::randn({8, 16});
    auto y = torch::randn({8, 4});
    auto out = torch::matmul(torch::relu(torch::matmul(x, w1) + b1), w2) + b2;
    torch::mse_loss(out, y).backward();
  }
  void zero_grad() {
    for (auto& p : params()) {
      auto q = p;
      if (q.grad().defined()) q.mutable_grad().zero_();
    }
  }
};

void test_bucketer(ProcessGroups& groups) {
  const int dp = groups.dp_size();
  // Reference: the mean gradient over every dp rank's data, computed locally.
  Net reference;
  std::vector<torch::Tensor> mean;
  for (int d = 0; d < dp; ++d) {
    reference.zero_grad();
    reference.backward_on(d);
    auto ps = reference.params();
    for (size_t i = 0; i < ps.size(); ++i) {
      if (d == 0) mean.push_back(torch::zeros_like(ps[i]));
      mean[i] += ps[i].grad() / dp;
    }
  }
  // Synchronous path (CPU): backward, then all_reduce_gradients.
  Net net;
  GradientBucketer bucketer(groups.dp(), net.params(), 0.002);  // ~2 KiB: several buckets
  check(bucketer.num_buckets() >= 2, "bucketer makes several buckets");
  net.backward_on(groups.dp_rank());
  bucketer.all_reduce_gradients();
  auto ps = net.params();
  for (size_t i = 0; i < ps.size(); ++i)
    check(torch::allclose(ps[i].grad(), mean[i], 1e-5, 1e-6), "bucketer average (sync), param " + std::to_string(i));

  // Hook path: buckets launch from autograd hooks as their gradients arrive, then finish().
  Net hooked;
  GradientBucketer hook_bucketer(groups.dp(), hooked.params(), 0.002);
  auto hps = hooked.params();
  for (size_t i = 0; i < hps.size(); ++i) {
    hps[i].register_hook([&hook_bucketer, i](torch::Tensor g) {
      hook_bucketer.on_grad_ready(i, g);
      return g;
    });
  }
  for (int step = 0; step < 2; ++step) {
    hooked.zero_grad();
    hooked.backward_on(groups.dp_rank());
    hook_bucketer.finish();
    for (size_t i = 0; i < hps.size(); ++i)
      check(torch::allclose(hps[i].grad(), mean[i], 1e-5, 1e-6),
            "bucketer average (hooks) step " + std::to_string(step) + ", param " + std::to_string(i));
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    MpiEnvironment env(&argc, &argv);
    auto world = MpiCommunicator::world();
    g_rank = world->rank();
    const int size = world->size();
    const int64_t tp = size % 2 == 0 && size >= 4 ? 2 : 1;
    const int64_t dp = size / tp;
    test_raw_collectives(*world);
    ProcessGroups groups(*world, dp, tp);
    test_groups(*world, groups, dp, tp);
    test_half_sums(*world);
    test_bucketer(groups);
    world->barrier();
    std::printf("[rank %d/%d dp=%lld tp=%lld] %d checks, %d failures\n", g_rank, size, static_cast<long long>(dp),
                static_cast<long long>(tp), g_checks, g_failures);
    std::fflush(stdout);
  } catch (const std::exception& e) {
    std::printf("[rank %d] ERROR: %s\n", g_rank, e.what());
    std::fflush(stdout);
    return 2;
  }
  return g_failures == 0 ? 0 : 1;
}
