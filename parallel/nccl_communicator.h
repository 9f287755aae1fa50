// NCCL backend of Communicator: collectives on raw CUDA device pointers, on the communicator's
// own stream. Built only with KEEL_WITH_CUDA.
//
// Stream ordering (every collective):
//   1. record `ready_` on the caller's compute stream, make the NCCL stream wait on it, so the
//      collective sees everything the compute stream produced before the call;
//   2. enqueue the NCCL operation on the NCCL stream;
//   3. record `done_` on the NCCL stream, make the compute stream wait on it, so work queued on the
//      compute stream after the call sees the result.
// The host never blocks (except in barrier(), which synchronizes the NCCL stream). Inside
// group_start()/group_end(), step 1 happens once at group_start() and step 3 once at group_end():
// NCCL launches grouped operations only at ncclGroupEnd, so an event recorded per call would
// complete before the work it is meant to guard.
//
// abort() calls ncclCommAbort: a rank whose peer died leaves a hung collective (a watchdog or the
// coordinator's heartbeat thread calls it); the object is unusable afterwards.
//
// NVLink SHARP / multicast (NVLS) is never used: no NVLS-specific API is called, and the
// constructor sets NCCL_NVLS_ENABLE=0 unless the environment already sets it.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace keel::parallel {

class NcclCommunicator : public Communicator {
 public:
  // Joins the communicator `unique_id` (the 128 bytes of an ncclUniqueId from unique_id(), sent
  // to every rank by rank 0) as `rank` of `size` on CUDA device `device`. Collective.
  NcclCommunicator(int rank, int size, const std::string& unique_id, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  // A fresh ncclUniqueId as 128 bytes (needs no GPU; rank 0 calls it and shares the bytes).
  static std::string unique_id();

  // The stream whose work the collectives order against (default: the legacy default stream 0).
  void set_compute_stream(cudaStream_t stream) { compute_stream_ = stream; }
  cudaStream_t compute_stream() const { return compute_stream_; }
  cudaStream_t nccl_stream() const { return stream_; }
  int device() const { return device_; }

  // Fuses the collectives issued between them into one NCCL launch (nestable).
  void group_start();
  void group_end();

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MemoryKind memory_kind() const override { return MemoryKind::kCuda; }
  std::string backend() const override { return "nccl"; }

  void all_reduce(void* buffer, size_t count, DataType type, ReduceOp op) override;
  void all_gather(const void* send, void* recv, size_t count_per_rank, DataType type) override;
  void reduce_scatter(const void* send, void* recv, size_t count_per_rank, DataType type,
                      ReduceOp op) override;
  void broadcast(void* buffer, size_t count, DataType type, int root) override;
  // All ranks reach this point and the NCCL stream has drained (host blocks).
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  void abort() override;

 private:
  NcclCommunicator(ncclComm_t comm, int device);  // wraps a comm from ncclCommSplit
  void init_resources();
  void check_alive(const char* what) const;
  void before_op();  // step 1 (skipped inside a group: done in group_start)
  void after_op();   // step 3 (skipped inside a group: done in group_end)

  ncclComm_t comm_ = nullptr;
  int rank_ = 0;
  int size_ = 1;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaStream_t compute_stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  cudaEvent_t done_ = nullptr;
  float* barrier_scratch_ = nullptr;  // one float on the device for barrier()
  int group_depth_ = 0;
};

}  // namespace keel::parallel
