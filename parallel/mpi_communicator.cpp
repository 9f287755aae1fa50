// MPI backend (see mpi_communicator.h for the bf16/f16 and error-handling choices).
#include "parallel/mpi_communicator.h"

#include <climits>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/check.h"
#include "parallel/half_convert.h"

#define KEEL_MPI_CHECK(call)                                                             \
  do {                                                                                   \
    const int keel_mpi_rc_ = (call);                                                     \
    KEEL_CHECK(keel_mpi_rc_ == MPI_SUCCESS,                                              \
               "MPI call " #call " failed: " << ::keel::parallel::mpi_error_string(keel_mpi_rc_)); \
  } while (0)

namespace keel::parallel {
namespace {

bool is_half(DataType type) { return type == DataType::kBFloat16 || type == DataType::kFloat16; }

MPI_Datatype mpi_type(DataType type) {
  switch (type) {
    case DataType::kFloat32: return MPI_FLOAT;
    case DataType::kBFloat16: return MPI_UINT16_T;  // raw bits; reductions go through float32
    case DataType::kFloat16: return MPI_UINT16_T;
    case DataType::kFloat64: return MPI_DOUBLE;
    case DataType::kInt64: return MPI_INT64_T;
    case DataType::kInt32: return MPI_INT32_T;
    case DataType::kUInt8: return MPI_UINT8_T;
  }
  KEEL_CHECK(false, "unknown DataType " << static_cast<int>(type));
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kAvg: return MPI_SUM;  // divided afterwards
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  KEEL_CHECK(false, "unknown ReduceOp " << static_cast<int>(op));
}

int checked_count(size_t count) {
  KEEL_CHECK(count <= static_cast<size_t>(INT_MAX),
             "MPI count " << count << " exceeds INT_MAX; split the buffer");
  return static_cast<int>(count);
}

template <typename T>
void divide(void* buffer, size_t count, int by) {
  T* p = static_cast<T*>(buffer);
  for (size_t i = 0; i < count; ++i) p[i] = static_cast<T>(p[i] / static_cast<T>(by));
}

// Divides `count` elements of a native (non-16-bit) type by `by`, for kAvg.
void divide_native(void* buffer, size_t count, DataType type, int by) {
  switch (type) {
    case DataType::kFloat32: divide<float>(buffer, count, by); break;
    case DataType::kFloat64: divide<double>(buffer, count, by); break;
    case DataType::kInt64: divide<int64_t>(buffer, count, by); break;
    case DataType::kInt32: divide<int32_t>(buffer, count, by); break;
    case DataType::kUInt8: divide<uint8_t>(buffer, count, by); break;
    default: KEEL_CHECK(false, "divide_native: unexpected " << to_string(type));
  }
}

}  // namespace

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length));
}

// ---- MpiEnvironment ----

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  KEEL_CHECK(!finalized, "MPI was already finalized; it cannot be initialized again");
  if (initialized()) {
    MPI_Query_thread(&thread_level_);
    return;
  }
  KEEL_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &thread_level_));
  owns_ = true;
}

MpiEnvironment::~MpiEnvironment() {
  if (!owns_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

bool MpiEnvironment::initialized() {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag != 0;
}

// ---- MpiCommunicator ----

std::unique_ptr<MpiCommunicator> MpiCommunicator::world() {
  KEEL_CHECK(MpiEnvironment::initialized(), "MpiCommunicator::world() needs an MpiEnvironment first");
  MPI_Comm comm = MPI_COMM_NULL;
  KEEL_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  return std::make_unique<MpiCommunicator>(comm);
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  KEEL_CHECK(comm_ != MPI_COMM_NULL, "MpiCommunicator needs a valid MPI_Comm");
  KEEL_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  KEEL_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  KEEL_MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
}

void MpiCommunicator::check_alive(const char* what) const {
  KEEL_CHECK(comm_ != MPI_COMM_NULL, "MpiCommunicator::" << what << " after abort()");
}

void MpiCommunicator::all_reduce(void* buffer, size_t count, DataType type, ReduceOp op) {
  check_alive("all_reduce");
  if (count == 0) return;
  if (is_half(type)) {
    std::vector<float> wide(count);
    half_to_float(buffer, wide.data(), count, type);
    KEEL_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, wide.data(), checked_count(count), MPI_FLOAT, mpi_op(op), comm_));
    if (op == ReduceOp::kAvg) divide<float>(wide.data(), count, size_);
    float_to_half(wide.data(), buffer, count, type);
    return;
  }
  KEEL_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buffer, checked_count(count), mpi_type(type), mpi_op(op), comm_));
  if (op == ReduceOp::kAvg) divide_native(buffer, count, type, size_);
}

void MpiCommunicator::all_gather(const void* send, void* recv, size_t count_per_rank, DataType type) {
  check_alive("all_gather");
  if (count_per_rank == 0) return;
  const size_t block = count_per_rank * element_size(type);
  const bool in_place = send == static_cast<const char*>(recv) + block * static_cast<size_t>(rank_);
  const int n = checked_count(count_per_rank);
  KEEL_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : send, n, mpi_type(type), recv, n,
                               mpi_type(type), comm_));
}

void MpiCommunicator::reduce_scatter(const void* send, void* recv, size_t count_per_rank, DataType type,
                                     ReduceOp op) {
  check_alive("reduce_scatter");
  if (count_per_rank == 0) return;
  const size_t total = count_per_rank * static_cast<size_t>(size_);
  const int n = checked_count(count_per_rank);
  checked_count(total);
  if (is_half(type)) {
    std::vector<float> wide_send(total), wide_recv(count_per_rank);
    half_to_float(send, wide_send.data(), total, type);
    KEEL_MPI_CHECK(MPI_Reduce_scatter_block(wide_send.data(), wide_recv.data(), n, MPI_FLOAT, mpi_op(op), comm_));
    if (op == ReduceOp::kAvg) divide<float>(wide_recv.data(), count_per_rank, size_);
    float_to_half(wide_recv.data(), recv, count_per_rank, type);
    return;
  }
  const size_t block = count_per_rank * element_size(type);
  const bool in_place = recv == static_cast<const char*>(send) + block * static_cast<size_t>(rank_);
  if (in_place) {
    // MPI's in-place form writes block 0 of the buffer; reduce into a temporary instead.
    std::vector<char> out(block);
    KEEL_MPI_CHECK(MPI_Reduce_scatter_block(send, out.data(), n, mpi_type(type), mpi_op(op), comm_));
    std::memcpy(recv, out.data(), block);
  } else {
    KEEL_MPI_CHECK(MPI_Reduce_scatter_block(send, recv, n, mpi_type(type), mpi_op(op), comm_));
  }
  if (op == ReduceOp::kAvg) divide_native(recv, count_per_rank, type, size_);
}

void MpiCommunicator::broadcast(void* buffer, size_t count, DataType type, int root) {
  check_alive("broadcast");
  KEEL_CHECK(root >= 0 && root < size_, "broadcast root " << root << " is out of range for size " << size_);
  if (count == 0) return;
  KEEL_MPI_CHECK(MPI_Bcast(buffer, checked_count(count), mpi_type(type), root, comm_));
}

void MpiCommunicator::barrier() {
  check_alive("barrier");
  KEEL_MPI_CHECK(MPI_Barrier(comm_));
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  check_alive("split");
  MPI_Comm sub = MPI_COMM_NULL;
  KEEL_MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub));
  if (sub == MPI_COMM_NULL) return nullptr;
  return std::make_unique<MpiCommunicator>(sub);
}

void MpiCommunicator::abort() {
  // No MPI_Abort: the coordinator decides whether the job dies. Freeing the handle makes any
  // later call on this object fail fast with a clear error.
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  comm_ = MPI_COMM_NULL;
}

}  // namespace keel::parallel
