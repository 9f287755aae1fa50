// Data-type helpers and the world-of-one communicator (see communicator.h).
#include "parallel/communicator.h"

#include <cstring>

#include "common/check.h"

namespace keel::parallel {

size_t element_size(DataType type) {
  switch (type) {
    case DataType::kFloat32: return 4;
    case DataType::kBFloat16: return 2;
    case DataType::kFloat16: return 2;
    case DataType::kFloat64: return 8;
    case DataType::kInt64: return 8;
    case DataType::kInt32: return 4;
    case DataType::kUInt8: return 1;
  }
  KEEL_CHECK(false, "unknown DataType " << static_cast<int>(type));
}

const char* to_string(DataType type) {
  switch (type) {
    case DataType::kFloat32: return "float32";
    case DataType::kBFloat16: return "bfloat16";
    case DataType::kFloat16: return "float16";
    case DataType::kFloat64: return "float64";
    case DataType::kInt64: return "int64";
    case DataType::kInt32: return "int32";
    case DataType::kUInt8: return "uint8";
  }
  return "unknown";
}

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
    case ReduceOp::kAvg: return "avg";
  }
  return "unknown";
}

void SingleProcessCommunicator::check_alive() const {
  KEEL_CHECK(!aborted_, "SingleProcessCommunicator used after abort()");
}

void SingleProcessCommunicator::all_reduce(void*, size_t, DataType, ReduceOp) {
  check_alive();  // sum/max/min/avg over one rank: the buffer already holds the result
}

void SingleProcessCommunicator::all_gather(const void* send, void* recv, size_t count_per_rank,
                                           DataType type) {
  check_alive();
  if (send != recv) std::memmove(recv, send, count_per_rank * element_size(type));
}

void SingleProcessCommunicator::reduce_scatter(const void* send, void* recv, size_t count_per_rank,
                                               DataType type, ReduceOp) {
  check_alive();
  if (send != recv) std::memmove(recv, send, count_per_rank * element_size(type));
}

void SingleProcessCommunicator::broadcast(void*, size_t, DataType, int root) {
  check_alive();
  KEEL_CHECK(root == 0, "broadcast root " << root << " is out of range for a world of 1");
}

void SingleProcessCommunicator::barrier() { check_alive(); }

std::unique_ptr<Communicator> SingleProcessCommunicator::split(int color, int) {
  check_alive();
  if (color < 0) return nullptr;
  return std::make_unique<SingleProcessCommunicator>();
}

}  // namespace keel::parallel
