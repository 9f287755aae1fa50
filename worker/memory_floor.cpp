// The training-memory floor (see memory_floor.h).
#include "worker/memory_floor.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace keel {
namespace {

std::string gib(double bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return text;
}

}  // namespace

TrainingMemoryFloor training_memory_floor(const ModelConfig& model, int64_t micro_batch, int64_t seq_len, int64_t tp_size,
                                          int64_t optimizer_shards) {
  const double d = static_cast<double>(model.d_model);
  const double vocab = static_cast<double>(model.vocab_size);
  const double hidden = static_cast<double>(model.mlp_hidden_width());
  const double mlp_matrices = model.activation == "swiglu" ? 3.0 : 2.0;  // gate, up, down vs up, down
  // Per block: Q, K, V and the output projection (4 d^2), the MLP's d x hidden matrices.
  const double per_layer = 4.0 * d * d + mlp_matrices * d * hidden;
  const double parameters = vocab * d * (model.tie_embeddings ? 1.0 : 2.0) + static_cast<double>(model.num_layers) * per_layer;
  const double tp = static_cast<double>(tp_size > 0 ? tp_size : 1);
  // (B, T, V) fp32 logits and their gradient, split over TP ranks with the head.
  const double logits = 2.0 * 4.0 * static_cast<double>(micro_batch) * static_cast<double>(seq_len) * vocab / tp;
  TrainingMemoryFloor floor;
  floor.parameters = static_cast<int64_t>(parameters);
  // fp32 weights and gradients (8 bytes), AdamW's two fp32 moments (8, split over the shards).
  const double per_parameter = 8.0 + 8.0 / static_cast<double>(optimizer_shards > 0 ? optimizer_shards : 1);
  floor.bytes_per_rank = static_cast<int64_t>(per_parameter * parameters / tp + logits);
  return floor;
}

std::string memory_floor_problem(const RunConfig& config, int64_t tp_size, int64_t capacity_bytes,
                                 const std::string& where) {
  if (capacity_bytes <= 0) return "";
  const int64_t shards = config.parallel.shard_optimizer ? std::max<int64_t>(1, config.parallel.dp) : 1;
  const TrainingMemoryFloor floor =
      training_memory_floor(config.model, config.train.batch_size, config.seq_len(), tp_size, shards);
  if (floor.bytes_per_rank <= capacity_bytes) return "";
  std::ostringstream s;
  s << "the model cannot fit: its weight matrices alone hold " << floor.parameters / 1000000 << "M parameters"
    << " (model.vocab_size " << config.model.vocab_size << ", d_model " << config.model.d_model << ", num_layers "
    << config.model.num_layers << ", mlp hidden " << config.model.mlp_hidden_width() << ")"
    << ", and training them needs at least " << gib(static_cast<double>(floor.bytes_per_rank))
    << " per rank ("
    << (shards > 1 ? "8 bytes per parameter for fp32 weights and gradients, 8 / " + std::to_string(shards) +
                         " for the sharded AdamW moments"
                   : std::string("16 bytes per parameter for fp32 weights, gradients and AdamW moments"))
    << (tp_size > 1 ? ", over parallel.tp " + std::to_string(tp_size) : std::string()) << ", plus one micro-batch of "
    << "logits), but " << where << " has " << gib(static_cast<double>(capacity_bytes))
    << ": shrink the model (model.d_model, model.num_layers, model.vocab_size), train.batch_size, or split it "
       "with parallel.tp (or shard the optimizer over data-parallel ranks: parallel.shard_optimizer=true)";
  return s.str();
}

}  // namespace keel
