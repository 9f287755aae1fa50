// Tensor collectives over Communicator (see torch_adapter.h).
#include "parallel/torch_adapter.h"

#include <map>
#include <string>
#include <utility>

#include "common/check.h"

namespace keel::parallel {
namespace {

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

}  // namespace keel::parallel
