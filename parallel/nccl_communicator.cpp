// NCCL backend (see nccl_communicator.h for the stream ordering and abort semantics).
#include "parallel/nccl_communicator.h"

#include <cstdlib>
#include <cstring>

#include "common/check.h"
#include "parallel/nccl_check.h"

namespace keel::parallel {
namespace {

ncclDataType_t nccl_type(DataType type) {
  switch (type) {
    case DataType::kFloat32: return ncclFloat32;
    case DataType::kBFloat16: return ncclBfloat16;
    case DataType::kFloat16: return ncclFloat16;
    case DataType::kFloat64: return ncclFloat64;
    case DataType::kInt64: return ncclInt64;
    case DataType::kInt32: return ncclInt32;
    case DataType::kUInt8: return ncclUint8;
  }
  KEEL_CHECK(false, "unknown DataType " << static_cast<int>(type));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
    case ReduceOp::kAvg: return ncclAvg;  // NCCL divides by size (integer division for integers)
  }
  KEEL_CHECK(false, "unknown ReduceOp " << static_cast<int>(op));
}

// Restores the calling thread's current device on scope exit.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

void disable_nvls() { setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0); }

}  // namespace

std::string NcclCommunicator::unique_id() {
  ncclUniqueId id;
  NCCL_CHECK(ncclGetUniqueId(&id));
  static_assert(sizeof(id.internal) == NCCL_UNIQUE_ID_BYTES, "ncclUniqueId layout");
  return std::string(id.internal, NCCL_UNIQUE_ID_BYTES);
}

NcclCommunicator::NcclCommunicator(int rank, int size, const std::string& unique_id, int device)
    : rank_(rank), size_(size), device_(device) {
  KEEL_CHECK(unique_id.size() == NCCL_UNIQUE_ID_BYTES,
             "ncclUniqueId must be " << NCCL_UNIQUE_ID_BYTES << " bytes, got " << unique_id.size());
  KEEL_CHECK(size >= 1 && rank >= 0 && rank < size, "NCCL rank " << rank << " out of range for size " << size);
  disable_nvls();
  ncclUniqueId id;
  std::memcpy(id.internal, unique_id.data(), NCCL_UNIQUE_ID_BYTES);
  DeviceGuard guard(device_);
  NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
  init_resources();
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, int device) : comm_(comm), device_(device) {
  NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
  NCCL_CHECK(ncclCommCount(comm_, &size_));
  DeviceGuard guard(device_);
  init_resources();
}

void NcclCommunicator::init_resources() {
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&barrier_scratch_), sizeof(float)));
}

NcclCommunicator::~NcclCommunicator() {
  // Destructors must not throw: release what exists, ignoring errors.
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device_);
  if (comm_ != nullptr) {
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
  }
  if (barrier_scratch_ != nullptr) cudaFree(barrier_scratch_);
  if (ready_ != nullptr) cudaEventDestroy(ready_);
  if (done_ != nullptr) cudaEventDestroy(done_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  cudaSetDevice(previous);
}

void NcclCommunicator::check_alive(const char* what) const {
  KEEL_CHECK(comm_ != nullptr, "NcclCommunicator::" << what << " after abort()");
}

void NcclCommunicator::before_op() {
  if (group_depth_ > 0) return;
  CUDA_CHECK(cudaEventRecord(ready_, compute_stream_));
  CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
}

void NcclCommunicator::after_op() {
  if (group_depth_ > 0) return;
  CUDA_CHECK(cudaEventRecord(done_, stream_));
  CUDA_CHECK(cudaStreamWaitEvent(compute_stream_, done_, 0));
}

void NcclCommunicator::group_start() {
  check_alive("group_start");
  if (group_depth_ == 0) {
    DeviceGuard guard(device_);
    before_op();
  }
  NCCL_CHECK(ncclGroupStart());
  ++group_depth_;
}

void NcclCommunicator::group_end() {
  KEEL_CHECK(group_depth_ > 0, "NcclCommunicator::group_end without group_start");
  NCCL_CHECK(ncclGroupEnd());
  if (--group_depth_ == 0) {
    DeviceGuard guard(device_);
    after_op();
  }
}

void NcclCommunicator::all_reduce(void* buffer, size_t count, DataType type, ReduceOp op) {
  check_alive("all_reduce");
  DeviceGuard guard(device_);
  before_op();
  NCCL_CHECK(ncclAllReduce(buffer, buffer, count, nccl_type(type), nccl_op(op), comm_, stream_));
  after_op();
}

void NcclCommunicator::all_gather(const void* send, void* recv, size_t count_per_rank, DataType type) {
  check_alive("all_gather");
  DeviceGuard guard(device_);
  before_op();
  NCCL_CHECK(ncclAllGather(send, recv, count_per_rank, nccl_type(type), comm_, stream_));
  after_op();
}

void NcclCommunicator::reduce_scatter(const void* send, void* recv, size_t count_per_rank, DataType type,
                                      ReduceOp op) {
  check_alive("reduce_scatter");
  DeviceGuard guard(device_);
  before_op();
  NCCL_CHECK(ncclReduceScatter(send, recv, count_per_rank, nccl_type(type), nccl_op(op), comm_, stream_));
  after_op();
}

void NcclCommunicator::broadcast(void* buffer, size_t count, DataType type, int root) {
  check_alive("broadcast");
  KEEL_CHECK(root >= 0 && root < size_, "broadcast root " << root << " is out of range for size " << size_);
  DeviceGuard guard(device_);
  before_op();
  NCCL_CHECK(ncclBroadcast(buffer, buffer, count, nccl_type(type), root, comm_, stream_));
  after_op();
}

void NcclCommunicator::barrier() {
  check_alive("barrier");
  KEEL_CHECK(group_depth_ == 0, "NcclCommunicator::barrier inside a group");
  DeviceGuard guard(device_);
  before_op();
  NCCL_CHECK(ncclAllReduce(barrier_scratch_, barrier_scratch_, 1, ncclFloat32, ncclSum, comm_, stream_));
  after_op();
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  check_alive("split");
  DeviceGuard guard(device_);
  ncclComm_t sub = nullptr;
  NCCL_CHECK(ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &sub, nullptr));
  if (sub == nullptr) return nullptr;
  std::unique_ptr<NcclCommunicator> result(new NcclCommunicator(sub, device_));
  result->set_compute_stream(compute_stream_);
  return result;
}

void NcclCommunicator::abort() {
  if (comm_ == nullptr) return;
  ncclComm_t comm = comm_;
  comm_ = nullptr;  // later calls fail fast; the destructor does not destroy an aborted comm
  NCCL_CHECK(ncclCommAbort(comm));
}

}  // namespace keel::parallel
