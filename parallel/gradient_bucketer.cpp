// Gradient averaging in buckets (see gradient_bucketer.h).
#include "parallel/gradient_bucketer.h"

#include <limits>
#include <utility>

#include "common/check.h"
#include "parallel/torch_adapter.h"

namespace keel::parallel {
namespace {

constexpr size_t kNone = std::numeric_limits<size_t>::max();

}  // namespace


GradientBucketer::GradientBucketer(Communicator& dp, std::vector<torch::Tensor> params, double bucket_mb)
    : comm_(dp), params_(std::move(params)) {
  KEEL_CHECK(bucket_mb > 0.0, "GradientBucketer: bucket_mb must be > 0 (got " << bucket_mb << ")");
  const double capacity_bytes = bucket_mb * 1024.0 * 1024.0;
  bucket_of_.assign(params_.size(), kNone);
  slot_of_.assign(params_.size(), kNone);
  ready_.assign(params_.size(), false);

  // Fill buckets in reverse parameter order; one open bucket per (dtype, device).
  struct Open {
    size_t bucket;
    int64_t bytes;
  };
  std::map<std::pair<int, std::string>, Open> open;
  std::vector<int64_t> numels;
  for (size_t k = params_.size(); k-- > 0;) {
    const torch::Tensor& p = params_[k];
    KEEL_CHECK(p.defined(), "GradientBucketer: parameter " << k << " is undefined");
    if (!p.requires_grad()) continue;
    to_data_type(p.scalar_type());
    if (comm_.size() > 1) {
      const bool host = comm_.memory_kind() == MemoryKind::kHost;
      KEEL_CHECK(host ? p.device().is_cpu() : p.device().is_cuda(),
                 "GradientBucketer: parameter " << k << " is on " << p.device().str() << " but the " << comm_.backend()
                                                << " backend reduces " << (host ? "host" : "CUDA") << " memory");
    }
    const auto key = std::make_pair(static_cast<int>(p.scalar_type()), p.device().str());
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    auto it = open.find(key);
    if (it == open.end() || (it->second.bytes > 0 && static_cast<double>(it->second.bytes + bytes) > capacity_bytes)) {
      buckets_.emplace_back();
      numels.push_back(0);
      it = open.insert_or_assign(key, Open{buckets_.size() - 1, 0}).first;
    }
    Bucket& bucket = buckets_[it->second.bucket];
    bucket_of_[k] = it->second.bucket;
    slot_of_[k] = bucket.params.size();
    bucket.params.push_back(k);
    bucket.offsets.push_back(numels[it->second.bucket]);
    numels[it->second.bucket] += p.numel();
    it->second.bytes += bytes;
  }
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const torch::Tensor& first = params_[buckets_[b].params.front()];
    buckets_[b].flat = torch::zeros({numels[b]}, first.options().requires_grad(false));
  }
}

torch::Tensor GradientBucketer::slice(size_t index) {
  Bucket& bucket = buckets_[bucket_of_[index]];
  const torch::Tensor& p = params_[index];
  return bucket.flat.narrow(0, bucket.offsets[slot_of_[index]], p.numel()).view(p.sizes());
}

void GradientBucketer::on_grad_ready(size_t index) {
  KEEL_CHECK(index < params_.size(), "GradientBucketer::on_grad_ready: index " << index << " out of range");
  on_grad_ready(index, params_[index].grad());
}

void GradientBucketer::on_grad_ready(size_t index, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mutex_);
  KEEL_CHECK(index < params_.size(), "GradientBucketer::on_grad_ready: index " << index << " out of range");
  if (bucket_of_[index] == kNone) return;  // no requires_grad: not reduced
  KEEL_CHECK(!ready_[index], "GradientBucketer: gradient of parameter " << index << " reported twice in one step");
  mark_ready_locked(index, grad);
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready == buckets_[next_launch_].params.size()) {
    launch_locked(next_launch_++);
  }
}

void GradientBucketer::mark_ready_locked(size_t index, const torch::Tensor& grad) {
  torch::NoGradGuard no_grad;
  torch::Tensor target = slice(index);
  if (grad.defined()) {
    KEEL_CHECK(grad.numel() == params_[index].numel(), "GradientBucketer: gradient of parameter "
                                                           << index << " has " << grad.numel() << " elements, expected "
                                                           << params_[index].numel());
    target.copy_(grad.view(params_[index].sizes()));
  } else {
    target.zero_();
  }
  ready_[index] = true;
  ++buckets_[bucket_of_[index]].ready;
}

void GradientBucketer::launch_locked(size_t b) {
  Bucket& bucket = buckets_[b];
  if (bucket.launched) return;
  all_reduce(comm_, bucket.flat, ReduceOp::kAvg);
  bucket.launched = true;
}

void GradientBucketer::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard no_grad;
  for (; next_launch_ < buckets_.size(); ++next_launch_) {
    Bucket& bucket = buckets_[next_launch_];
    for (size_t index : bucket.params) {
      if (!ready_[index]) mark_ready_locked(index, params_[index].grad());
    }
    launch_locked(next_launch_);
  }
  for (Bucket& bucket : buckets_) {
    for (size_t index : bucket.params) {
      torch::Tensor& p = params_[index];
      torch::Tensor averaged = slice(index);
      if (p.grad().defined()) {
        p.mutable_grad().copy_(averaged);
      } else {
        p.mutable_grad() = averaged.clone();
      }
      ready_[index] = false;
    }
    bucket.ready = 0;
    bucket.launched = false;
  }
  next_launch_ = 0;
}

}  // namespace keel::parallel
