// Torch side of the collectives: tensor wrappers over Communicator (gradient averaging in buckets
// is gradient_bucketer.h).
//
// Tensors must be contiguous and live where the backend expects them: CPU for MPI (and single),
// CUDA for NCCL; a mismatch throws KeelError saying which backend wants which device (no hidden
// device copies). On a world of one every call is a device-agnostic no-op or copy.
// On GPU the caller points the NcclCommunicator at the current Torch stream first
// (nccl.set_compute_stream(at::cuda::getCurrentCUDAStream())); this file stays free of CUDA headers.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "parallel/communicator.h"

namespace keel::parallel {

// The DataType of a Torch dtype; throws KeelError for dtypes no backend reduces (bool, complex...).
DataType to_data_type(torch::ScalarType type);

// In place over the communicator.
void all_reduce(Communicator& comm, torch::Tensor& tensor, ReduceOp op);
// recv.numel() == comm.size() * send.numel(); rank r's send lands at recv's flat block r.
void all_gather(Communicator& comm, const torch::Tensor& send, torch::Tensor& recv);
// Returns a new tensor of shape [comm.size(), send.sizes()...].
torch::Tensor all_gather(Communicator& comm, const torch::Tensor& send);
// send.numel() == comm.size() * recv.numel(); recv gets the reduced flat block comm.rank().
void reduce_scatter(Communicator& comm, const torch::Tensor& send, torch::Tensor& recv, ReduceOp op);
void broadcast(Communicator& comm, torch::Tensor& tensor, int root);

}  // namespace keel::parallel
