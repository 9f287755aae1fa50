// MPI backend of Communicator: collectives on host memory for CPU runs (and CPU tests of the
// distributed logic), plus MpiEnvironment, the once-per-process MPI_Init_thread/MPI_Finalize.
//
// bfloat16 / float16: MPI has no 16-bit float types, so reductions convert the buffer to float32,
// reduce in float32 (sums accumulate without intermediate 16-bit rounding) and round back to
// nearest-even once. Gathers and broadcasts move the raw 16-bit values. kAvg = sum, then divide by
// size() (integer division for integer types).
//
// Errors: the communicator uses MPI_ERRORS_RETURN, so every failing MPI call throws KeelError with
// the MPI error string. A dead peer cannot be detected or escaped from inside a blocking MPI
// collective; that case is handled by the coordinator, which tears the whole job down. abort()
// therefore only frees this rank's communicator (MPI_Comm_free, never MPI_Abort) and marks it
// unusable.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace keel::parallel {

// Initializes MPI (asking for MPI_THREAD_SERIALIZED: calls may come from different threads, one
// at a time) unless it already is, and finalizes it on destruction if this object initialized it.
// Create one in main() before any MpiCommunicator; it must outlive them all.
class MpiEnvironment {
 public:
  MpiEnvironment(int* argc = nullptr, char*** argv = nullptr);
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  // The thread level MPI granted (MPI_THREAD_*).
  int thread_level() const { return thread_level_; }
  static bool initialized();

 private:
  bool owns_ = false;
  int thread_level_ = 0;
};

class MpiCommunicator : public Communicator {
 public:
  // A communicator over all processes (a duplicate of MPI_COMM_WORLD). MPI must be initialized.
  static std::unique_ptr<MpiCommunicator> world();
  // Takes ownership of `comm` (freed on destruction).
  explicit MpiCommunicator(MPI_Comm comm);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MemoryKind memory_kind() const override { return MemoryKind::kHost; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(void* buffer, size_t count, DataType type, ReduceOp op) override;
  void all_gather(const void* send, void* recv, size_t count_per_rank, DataType type) override;
  void reduce_scatter(const void* send, void* recv, size_t count_per_rank, DataType type,
                      ReduceOp op) override;
  void broadcast(void* buffer, size_t count, DataType type, int root) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  void abort() override;

  MPI_Comm handle() const { return comm_; }

 private:
  void check_alive(const char* what) const;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

// The message of an MPI error code ("MPI_ERR_COUNT: invalid count argument").
std::string mpi_error_string(int code);

}  // namespace keel::parallel
