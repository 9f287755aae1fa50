// The sharded optimizer's collectives (see optimizer_sharding.h).
#include "worker/optimizer_sharding.h"

#include <algorithm>
#include <vector>

#include "common/check.h"
#include "parallel/torch_adapter.h"

namespace keel {
namespace {

// Copies the flat positions [begin, begin + dst.numel()) of `tensors` (flattened and concatenated,
// tensor i starting at offsets[i]) into dst; positions past the end (padding) become 0.
void copy_flat_out(const std::vector<torch::Tensor>& tensors, const std::vector<int64_t>& offsets, int64_t begin,
                   torch::Tensor& dst) {
  const int64_t end = begin + dst.numel();
  dst.zero_();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t a = std::max(begin, offsets[i]), b = std::min(end, offsets[i] + tensors[i].numel());
    if (a >= b) continue;
    dst.narrow(0, a - begin, b - a).copy_(tensors[i].reshape(-1).narrow(0, a - offsets[i], b - a));
  }
}

// The reverse: src (1-D) lands at flat positions [begin, begin + src.numel()); padding is dropped.
void copy_flat_in(std::vector<torch::Tensor>& tensors, const std::vector<int64_t>& offsets, int64_t begin,
                  const torch::Tensor& src) {
  const int64_t end = begin + src.numel();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t a = std::max(begin, offsets[i]), b = std::min(end, offsets[i] + tensors[i].numel());
    if (a >= b) continue;
    tensors[i].view(-1).narrow(0, a - offsets[i], b - a).copy_(src.narrow(0, a - begin, b - a));
  }
}

}  // namespace

FlatRange owned_flat_range(int64_t total, int rank, int size) {
  KEEL_CHECK(size >= 1 && rank >= 0 && rank < size && total >= 0,
             "owned_flat_range: rank " << rank << " of " << size << ", " << total << " elements");
  const int64_t shard = (total + size - 1) / size;
  const int64_t begin = std::min(total, shard * rank);
  return {begin, std::min(total, begin + shard)};
}

OptimizerSharding::OptimizerSharding(parallel::Communicator& dp, AdamW& optimizer, bool shard_gradients,
                                     int64_t chunk_elements)
    : dp_(dp), optimizer_(optimizer), chunk_(std::max<int64_t>(1, chunk_elements)), shard_gradients_(shard_gradients) {
  const int64_t total = optimizer.flat_size();
  shard_ = (total + dp.size() - 1) / dp.size();
  const FlatRange expected = owned_flat_range(total, dp.rank(), dp.size());
  const FlatRange owned = optimizer.owned_range();
  KEEL_CHECK(optimizer.sharded() && owned.begin == expected.begin && owned.end == expected.end,
             "optimizer sharding: the optimizer owns [" << owned.begin << ", " << owned.end << ") but DP rank "
                                                        << dp.rank() << " of " << dp.size() << " should own ["
                                                        << expected.begin << ", " << expected.end << ")");
}

template <typename Read, typename Write>
void OptimizerSharding::all_gather_flat(const Read& read, const Write& write) {
  const auto& params = optimizer_.params();
  const auto options = params.at(0).options();
  const int size = dp_.size();
  const int64_t mine = shard_ * dp_.rank();
  for (int64_t c = 0; c < shard_; c += chunk_) {
    const int64_t n = std::min(chunk_, shard_ - c);
    torch::Tensor send = torch::empty({n}, options);          // (n): this rank's piece of the chunk
    torch::Tensor recv = torch::empty({n * size}, options);   // (size * n): every rank's piece
    read(mine + c, send);
    parallel::all_gather(dp_, send, recv);
    for (int j = 0; j < size; ++j) write(shard_ * j + c, recv.narrow(0, n * j, n));
  }
}

void OptimizerSharding::all_gather_parameters() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> params = optimizer_.params();
  const std::vector<int64_t>& offsets = optimizer_.flat_offsets();
  all_gather_flat([&](int64_t begin, torch::Tensor& dst) { copy_flat_out(params, offsets, begin, dst); },
                  [&](int64_t begin, const torch::Tensor& src) { copy_flat_in(params, offsets, begin, src); });
}

void OptimizerSharding::reduce_scatter_gradients() {
  KEEL_CHECK(shard_gradients_, "optimizer sharding: gradients are not sharded (parallel.shard_gradients=false)");
  torch::NoGradGuard no_grad;
  const auto& params = optimizer_.params();
  const auto options = params.at(0).options();
  const std::vector<int64_t>& offsets = optimizer_.flat_offsets();
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) grads.push_back(p.grad().defined() ? p.grad() : torch::zeros_like(p));
  const FlatRange owned = optimizer_.owned_range();
  if (!owned_grad_.defined()) owned_grad_ = torch::empty({owned.size()}, options);  // (owned)
  const int size = dp_.size();
  for (int64_t c = 0; c < shard_; c += chunk_) {
    const int64_t n = std::min(chunk_, shard_ - c);
    torch::Tensor send = torch::empty({n * size}, options);  // (size * n): rank j's piece at block j
    torch::Tensor recv = torch::empty({n}, options);         // (n): this rank's piece, averaged
    for (int j = 0; j < size; ++j) {
      torch::Tensor block = send.narrow(0, n * j, n);
      copy_flat_out(grads, offsets, shard_ * j + c, block);
    }
    parallel::reduce_scatter(dp_, send, recv, parallel::ReduceOp::kAvg);
    const int64_t valid = std::min(n, owned.size() - c);  // the rest is padding past the parameters
    if (valid > 0) owned_grad_.narrow(0, c, valid).copy_(recv.narrow(0, 0, valid));
  }
  // The whole gradients are not needed any more: free them (backward allocates them again).
  for (const auto& p : params) {
    torch::Tensor param = p;
    param.mutable_grad() = torch::Tensor();
  }
  optimizer_.set_owned_gradient(owned_grad_);
}

torch::Tensor OptimizerSharding::gradient_squares() {
  KEEL_CHECK(shard_gradients_ && owned_grad_.defined(), "optimizer sharding: no reduce-scattered gradient");
  const auto& params = optimizer_.params();
  auto squares = torch::zeros({static_cast<int64_t>(params.size())},
                              torch::TensorOptions().dtype(torch::kFloat).device(params.at(0).device()));  // (P)
  // Each parameter's piece of the range, as the optimizer itself reads it (AdamW::grad_part).
  for (size_t i = 0; i < params.size(); ++i)
    if (optimizer_.has_part(i)) squares[static_cast<int64_t>(i)] = optimizer_.grad_part(i).to(torch::kFloat).pow(2).sum();
  parallel::all_reduce(dp_, squares, parallel::ReduceOp::kSum);
  return squares;
}

void OptimizerSharding::scale_gradient(double factor) {
  KEEL_CHECK(shard_gradients_ && owned_grad_.defined(), "optimizer sharding: no reduce-scattered gradient");
  torch::NoGradGuard no_grad;
  owned_grad_.mul_(factor);
}

}  // namespace keel
