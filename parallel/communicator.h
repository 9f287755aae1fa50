// Communicator: the Torch-free interface every collective backend implements (MPI on host memory,
// NCCL on device memory, and a world of one for the non-distributed path).
//
// Why raw memory: the backends and the process-group logic stay free of LibTorch (the coordinator
// and tests link them without Torch); parallel/torch_adapter.h maps tensors onto these calls.
//
// Conventions shared by all backends:
//   * `count` is in elements of `DataType`, never bytes.
//   * Every call is collective over the communicator: all ranks must call the same operations in
//     the same order with the same counts, data types and roots.
//   * all_reduce and broadcast are in place (`buffer` is input and output).
//   * all_gather: `recv` holds size() * count_per_rank elements, rank r's block at r * count. In
//     place when send == recv + rank() * count_per_rank (NCCL's convention); otherwise send and
//     recv must not overlap.
//   * reduce_scatter: `send` holds size() * count_per_rank elements; rank r receives the reduced
//     block r. In place when recv == send + rank() * count_per_rank; otherwise no overlap.
//   * kAvg is the sum divided by size() (integer division for integer types).
//   * split(color, key) is collective: ranks passing the same color form a new communicator,
//     ordered by key (ties by old rank); a negative color returns nullptr (not in any group).
//   * abort() tears the communicator down without waiting for peers; the object is unusable after.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace keel::parallel {

enum class DataType { kFloat32, kBFloat16, kFloat16, kFloat64, kInt64, kInt32, kUInt8 };
enum class ReduceOp { kSum, kMax, kMin, kAvg };
// Where a backend expects its buffers: host memory (MPI, single) or CUDA device memory (NCCL).
enum class MemoryKind { kHost, kCuda };

// Bytes per element of `type`.
size_t element_size(DataType type);
const char* to_string(DataType type);
const char* to_string(ReduceOp op);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Which memory the buffers passed to this communicator must live in.
  virtual MemoryKind memory_kind() const = 0;
  // A short backend name for logs: "single", "mpi", "nccl".
  virtual std::string backend() const = 0;

  virtual void all_reduce(void* buffer, size_t count, DataType type, ReduceOp op) = 0;
  virtual void all_gather(const void* send, void* recv, size_t count_per_rank, DataType type) = 0;
  virtual void reduce_scatter(const void* send, void* recv, size_t count_per_rank, DataType type,
                              ReduceOp op) = 0;
  virtual void broadcast(void* buffer, size_t count, DataType type, int root) = 0;
  virtual void barrier() = 0;
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  virtual void abort() = 0;
};

// A world of one: reductions are the identity, gathers and scatters are copies. Used when the job
// is not distributed, so callers never branch on "is there a communicator". Host memory only.
class SingleProcessCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  MemoryKind memory_kind() const override { return MemoryKind::kHost; }
  std::string backend() const override { return "single"; }

  void all_reduce(void* buffer, size_t count, DataType type, ReduceOp op) override;
  void all_gather(const void* send, void* recv, size_t count_per_rank, DataType type) override;
  void reduce_scatter(const void* send, void* recv, size_t count_per_rank, DataType type,
                      ReduceOp op) override;
  void broadcast(void* buffer, size_t count, DataType type, int root) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  void abort() override { aborted_ = true; }

 private:
  void check_alive() const;
  bool aborted_ = false;
};

}  // namespace keel::parallel
