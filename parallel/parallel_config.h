// ParallelConfig: the "parallel" config section (data- and tensor-parallel degrees, backend, and
// the gradient bucket size, the sharded optimizer), in the visit pattern of common/config.h. Torch-free.
#pragma once

#include <cstdint>
#include <string>

#include "common/config.h"

namespace keel::parallel {

struct ParallelConfig {
  int64_t dp = 1;                  // data-parallel degree: model replicas, each on its own batch shard
  int64_t tp = 1;                  // tensor-parallel degree: ranks sharing each layer (adjacent ranks)
  std::string backend = "auto";    // auto | mpi | nccl | single
  double bucket_mb = 25.0;         // gradient all-reduce bucket size in MiB (GradientBucketer)
  // ZeRO-1: each DP rank keeps the AdamW moments of 1/dp of the parameters and updates only
  // those; the updated parameters are all-gathered after each step (worker/optimizer_sharding.h).
  // Same arithmetic as unsharded; checkpoints keep the whole-tensor format, so a run can resume
  // with another dp or with sharding switched off or on.
  bool shard_optimizer = false;
  // ZeRO-2 (needs shard_optimizer): the gradients are reduce-scattered instead of all-reduced, each
  // rank keeps only its range's averaged gradient and frees the whole ones; the monitor's grad
  // norms are summed from the ranges. Not overlapped with backward (ZeRO-1 is, on GPUs).
  bool shard_gradients = false;

  void visit(ConfigVisitor& v) {
    v.field("dp", dp, "data-parallel degree (model replicas); dp x tp must equal the world size");
    v.field("tp", tp, "tensor-parallel degree (ranks sharing a layer; adjacent ranks)");
    v.choice("backend", backend, {"auto", "mpi", "nccl", "single"},
             "collectives: auto (nccl on GPU, mpi on CPU, single for a world of one), mpi, nccl or single");
    v.field("bucket_mb", bucket_mb, "gradient all-reduce bucket size in MiB");
    v.field("shard_optimizer", shard_optimizer,
            "ZeRO-1: split the AdamW moments over the data-parallel ranks (each updates its 1/dp share)");
    v.field("shard_gradients", shard_gradients,
            "ZeRO-2: reduce-scatter the gradients, each rank keeps only its share (needs shard_optimizer)");
  }

  void validate() const {
    auto require = [](bool ok, const std::string& message) {
      if (!ok) throw ConfigError(message);
    };
    require(dp >= 1, "parallel.dp must be >= 1 (got " + std::to_string(dp) + ")");
    require(tp >= 1, "parallel.tp must be >= 1 (got " + std::to_string(tp) + ")");
    require(backend == "auto" || backend == "mpi" || backend == "nccl" || backend == "single",
            "parallel.backend must be auto, mpi, nccl or single (got '" + backend + "')");
    require(backend != "single" || dp * tp == 1, "parallel.backend=single needs parallel.dp = parallel.tp = 1");
    require(bucket_mb > 0.0, "parallel.bucket_mb must be > 0");
    require(!shard_gradients || shard_optimizer,
            "parallel.shard_gradients=true needs parallel.shard_optimizer=true (ZeRO-2 shards the optimizer too)");
  }
};

}  // namespace keel::parallel
