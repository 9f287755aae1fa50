// Tensor collectives and GradientBucketer over Communicator (see torch_adapter.h).
#include "parallel/torch_adapter.h"

#include <limits>
#include <map>
#include <string>
#include <utility>

#include "common/check.h"

namespace keel::parallel {
namespace {

constexpr size_t kNone = std::numeric_limits<size_t>::max();

std::string device_name(const torch::Tensor& t) { return t.device().str(); }

// Defined, contiguous, and on the device the backend reads (skipped for a world of one).
void check_tensor(const Communicator& comm, const torch::Tensor& t, const char* what) {
  KEEL_CHECK(t.defined(), what << ": undefined tensor");
  KEEL_CHECK(t.is_contiguous(), what << ": the tensor must be contiguous (call .contiguous() first)");
  to_data_type(t.scalar_type());
  if (comm.size() == 1) return;
  if (comm.memory_kind() == MemoryKind::kHost) {
    KEEL_CHECK(t.device().is_cpu(), what << ": the " << comm.backend() << " backend reduces host memory, but the tensor is on "
                                         << device_name(t) << "; move it to CPU or use the nccl backend on GPUs");
  } else {
    KEEL_CHECK(t.device().is_cuda(), what << ": the " << comm.backend() << " backend reduces CUDA memory, but the tensor is on "
                                          << device_name(t) << "; move it to the GPU or use the mpi backend on CPUs");
  }
}

void check_pair(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  KEEL_CHECK(a.scalar_type() == b.scalar_type(), what << ": dtypes differ (" << a.scalar_type() << " vs "
                                                      << b.scalar_type() << ")");
  KEEL_CHECK(a.device() == b.device(), what << ": devices differ (" << device_name(a) << " vs " << device_name(b) << ")");
}

}  // namespace

DataType to_data_type(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat: return DataType::kFloat32;
    case torch::kBFloat16: return DataType::kBFloat16;
    case torch::kHalf: return DataType::kFloat16;
    case torch::kDouble: return DataType::kFloat64;
    case torch::kLong: return DataType::kInt64;
    case torch::kInt: return DataType::kInt32;
    case torch::kByte: return DataType::kUInt8;
    default: break;
  }
  KEEL_CHECK(false, "no collective DataType for torch dtype " << type
                    << " (supported: float32, bfloat16, float16, float64, int64, int32, uint8)");
}

void all_reduce(Communicator& comm, torch::Tensor& tensor, ReduceOp op) {
  check_tensor(comm, tensor, "all_reduce");
  if (comm.size() == 1) return;
  comm.all_reduce(tensor.data_ptr(), static_cast<size_t>(tensor.numel()), to_data_type(tensor.scalar_type()), op);
}

void all_gather(Communicator& comm, const torch::Tensor& send, torch::Tensor& recv) {
  check_tensor(comm, send, "all_gather(send)");
  check_tensor(comm, recv, "all_gather(recv)");
  check_pair(send, recv, "all_gather");
  KEEL_CHECK(recv.numel() == send.numel() * comm.size(), "all_gather: recv has " << recv.numel() << " elements, need "
                                                                                  << comm.size() << " x " << send.numel());
  if (comm.size() == 1) {
    if (recv.data_ptr() != send.data_ptr()) recv.view_as(send).copy_(send);
    return;
  }
  comm.all_gather(send.data_ptr(), recv.data_ptr(), static_cast<size_t>(send.numel()),
                  to_data_type(send.scalar_type()));
}

torch::Tensor all_gather(Communicator& comm, const torch::Tensor& send) {
  std::vector<int64_t> shape{comm.size()};
  for (int64_t s : send.sizes()) shape.push_back(s);
  torch::Tensor recv = torch::empty(shape, send.options());
  all_gather(comm, send, recv);
  return recv;
}

void reduce_scatter(Communicator& comm, const torch::Tensor& send, torch::Tensor& recv, ReduceOp op) {
  check_tensor(comm, send, "reduce_scatter(send)");
  check_tensor(comm, recv, "reduce_scatter(recv)");
  check_pair(send, recv, "reduce_scatter");
  KEEL_CHECK(send.numel() == recv.numel() * comm.size(), "reduce_scatter: send has " << send.numel()
                                                          << " elements, need " << comm.size() << " x " << recv.numel());
  if (comm.size() == 1) {
    if (recv.data_ptr() != send.data_ptr()) recv.copy_(send.view_as(recv));
    return;
  }
  comm.reduce_scatter(send.data_ptr(), recv.data_ptr(), static_cast<size_t>(recv.numel()),
                      to_data_type(send.scalar_type()), op);
}

void broadcast(Communicator& comm, torch::Tensor& tensor, int root) {
  check_tensor(comm, tensor, "broadcast");
  KEEL_CHECK(root >= 0 && root < comm.size(), "broadcast: root " << root << " out of range for size " << comm.size());
  if (comm.size() == 1) return;
  comm.broadcast(tensor.data_ptr(), static_cast<size_t>(tensor.numel()), to_data_type(tensor.scalar_type()), root);
}

// ---- GradientBucketer ----

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
