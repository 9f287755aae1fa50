// Training checkpoints: LibTorch tensors <-> the Torch-free checkpoint format (see training_checkpoint.h).
#include "checkpoint_torch/training_checkpoint.h"

#include <ATen/Context.h>

#include <map>
#include <mutex>

#include "checkpoint/safetensors.h"
#include "checkpoint_torch/optimizer_shard_files.h"
#include "checkpoint_torch/tensor_io.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"

namespace keel {
using checkpoint::DType;
using checkpoint::PendingCheckpoint;
using checkpoint::SafetensorsFile;
using checkpoint::TensorView;
namespace {

void copy_into(const SafetensorsFile& file, const std::string& name, torch::Tensor& target) {
  KEEL_CHECK(file.has(name), file.path() << ": tensor '" << name << "' is missing");
  const TensorView view = file.view(name);
  KEEL_CHECK(view.shape == target.sizes().vec(), file.path() << ": tensor '" << name << "' has shape "
                                                             << torch::IntArrayRef(view.shape)
                                                             << " but the model expects " << target.sizes());
  KEEL_CHECK(view.dtype == dtype_of(target), file.path() << ": tensor '" << name << "' has dtype "
                                                         << dtype_name(view.dtype) << " but the model expects "
                                                         << dtype_name(dtype_of(target)));
  auto source = torch::from_blob(const_cast<void*>(view.data), view.shape, target.scalar_type());
  torch::NoGradGuard no_grad;
  target.copy_(source);
}

std::vector<at::Device> rng_devices(const torch::Tensor& any_param) {
  std::vector<at::Device> devices = {at::Device(at::kCPU)};
  if (any_param.is_cuda()) devices.push_back(any_param.device());
  return devices;
}

std::string rng_name(const at::Device& device) { return "rng." + device.str(); }

// The saved TP shards of the model files and the TP degree they were saved with (the optimizer's
// files: optimizer_shard_files.h).
struct ShardSet {
  std::vector<std::unique_ptr<SafetensorsFile>> files;  // index = saved TP rank
  int64_t saved_tp = 1;

  ShardSet(const std::string& dir, const std::string& stem, int64_t saved_tp_size) : saved_tp(saved_tp_size) {
    for (int64_t r = 0; r < saved_tp; ++r)
      files.push_back(std::make_unique<SafetensorsFile>(dir + "/" + stem + shard_suffix(r, saved_tp) + ".safetensors"));
  }

  // Copies tensor `key` (parameter `param_name`'s split) into this rank's `target`, re-cutting it
  // when the checkpoint was saved with another TP degree.
  void load(const std::string& key, const std::string& param_name, torch::Tensor& target,
            const CheckpointRole& role) const {
    const ShardKind kind = shard_kind(param_name);
    if (saved_tp == role.tp_size) return copy_into(*files.at(static_cast<size_t>(role.tp_rank)), key, target);
    if (kind == ShardKind::kReplicated) return copy_into(*files.at(0), key, target);
    std::vector<torch::Tensor> shards;
    for (const auto& file : files) {
      KEEL_CHECK(file->has(key), file->path() << ": tensor '" << key << "' is missing");
      const TensorView view = file->view(key);
      KEEL_CHECK(view.dtype == dtype_of(target), file->path() << ": tensor '" << key << "' has dtype "
                                                              << dtype_name(view.dtype));
      shards.push_back(torch::from_blob(const_cast<void*>(view.data), view.shape, target.scalar_type()));
    }
    torch::Tensor mine = tensor_parallel_shard(tensor_parallel_unshard(shards, kind), kind, role.tp_rank, role.tp_size);
    KEEL_CHECK(mine.sizes() == target.sizes(),
               files[0]->path() << ": tensor '" << key << "' saved with parallel.tp=" << saved_tp << " re-cuts to "
                                << mine.sizes() << " for parallel.tp=" << role.tp_size << " but the model expects "
                                << target.sizes());
    torch::NoGradGuard no_grad;
    target.copy_(mine);
  }
};

nlohmann::json read_trainer_json(const std::string& checkpoint_dir) {
  const std::string text = fs::read_file(checkpoint_dir + "/trainer_state.json");
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  KEEL_CHECK(!json.is_discarded() && json.is_object(), checkpoint_dir << "/trainer_state.json is not valid JSON");
  return json;
}

}  // namespace

bool writes_shard_files(const AdamW& optimizer, const CheckpointRole& role) {
  return role.writes_shard || optimizer_dp_shards(optimizer, role.dp_size) > 1;
}

std::vector<std::string> expected_shard_files(const AdamW& optimizer, const CheckpointRole& role) {
  const int64_t dp_shards = optimizer_dp_shards(optimizer, role.dp_size);
  std::vector<std::string> files;
  for (int64_t r = 0; r < role.tp_size; ++r) {
    files.push_back("model" + shard_suffix(r, role.tp_size) + ".safetensors");
    if (dp_shards == 1) files.push_back(optimizer_file_name(r, role.tp_size));
    for (int64_t d = 0; dp_shards > 1 && d < dp_shards; ++d)
      files.push_back(optimizer_shard_file_name(r, role.tp_size, d, dp_shards));
  }
  return files;
}

ShardWriteReport write_checkpoint_files(const std::string& dir, Gpt& model, AdamW& optimizer,
                                        const TrainerState& state, const std::string& config_yaml,
                                        const CheckpointRole& role) {
  ShardWriteReport report;
  const int64_t dp_shards = optimizer_dp_shards(optimizer, role.dp_size);
  report.shard_name = "tp" + std::to_string(role.tp_rank);
  if (dp_shards > 1) report.shard_name += ".dp" + std::to_string(role.dp_rank);
  const std::string suffix = shard_suffix(role.tp_rank, role.tp_size);
  if (role.writes_shard) {
    TensorBundle weights;
    for (const auto& item : model->named_parameters()) weights.add(item.key(), item.value());
    for (const auto& item : model->named_buffers()) weights.add(item.key(), item.value());
    const std::string model_file = "model" + suffix + ".safetensors";
    write_safetensors(dir + "/" + model_file, weights.views,
                      {{"format", "keel"}, {"step", std::to_string(state.step)},
                       {"tp_rank", std::to_string(role.tp_rank)}, {"tp_size", std::to_string(role.tp_size)}});
    report.files.push_back(model_file);
  }
  // The optimizer file: whole tensors from the model shard's writer, or each DP rank's own range.
  if (dp_shards > 1 || role.writes_shard)
    report.files.push_back(
        write_optimizer_file(dir, optimizer, role.tp_rank, role.tp_size, role.dp_rank, role.dp_size));
  for (const auto& file : report.files) report.bytes += fs::file_size(dir + "/" + file);
  if (!report.files.empty()) report.crc32 = fs::crc32_file(dir + "/" + report.files.front());
  if (role.writes_common) {
    TensorBundle rng;
    for (const auto& device : rng_devices(optimizer.params().at(0)))
      rng.add(rng_name(device), at::globalContext().defaultGenerator(device).get_state());
    write_safetensors(dir + "/rng.safetensors", rng.views);

    nlohmann::json trainer = {{"step", state.step},
                              {"tokens_seen", state.tokens_seen},
                              {"data_cursor", state.data_cursor},
                              {"monitor", state.monitor},
                              {"optimizer_step_count", optimizer.step_count()},
                              {"layout", {{"tp", role.tp_size}, {"dp", role.dp_size},
                                          {"shard_optimizer", optimizer.sharded()},
                                          {"optimizer_dp_shards", dp_shards}}},
                              {"extra", state.extra}};
    const std::string trainer_text = trainer.dump(2) + "\n";
    fs::write_file_durable(dir + "/trainer_state.json", trainer_text.data(), trainer_text.size());
    fs::write_file_durable(dir + "/config.yaml", config_yaml.data(), config_yaml.size());
  }
  return report;
}

std::string save_training_checkpoint(checkpoint::CheckpointStore& store, Gpt& model, AdamW& optimizer,
                                     const TrainerState& state, const std::string& config_yaml,
                                     ShardWriteReport* written) {
  PendingCheckpoint pending = store.begin(state.step);
  const ShardWriteReport report =
      write_checkpoint_files(pending.dir(), model, optimizer, state, config_yaml, CheckpointRole{});
  if (written) *written = report;
  return store.commit(std::move(pending), {{"tokens_seen", state.tokens_seen}});
}

namespace {

// The TP degree a checkpoint was saved with, from its trainer_state.json (no layout: single-process).
int64_t saved_tp_size(const nlohmann::json& json, const std::string& checkpoint_dir) {
  const int64_t saved_tp = json.contains("layout") ? json["layout"].value("tp", int64_t{1}) : 1;
  KEEL_CHECK(saved_tp >= 1, checkpoint_dir << "/trainer_state.json: bad layout.tp " << saved_tp);
  return saved_tp;
}

// Model parameters and buffers for `role`'s TP rank, re-cut when saved with another TP degree.
void load_weights(const std::string& checkpoint_dir, int64_t saved_tp, Gpt& model, const CheckpointRole& role) {
  ShardSet weights(checkpoint_dir, "model", saved_tp);
  for (auto& item : model->named_parameters()) weights.load(item.key(), item.key(), item.value(), role);
  for (auto& item : model->named_buffers()) weights.load(item.key(), item.key(), item.value(), role);
}

}  // namespace

std::vector<std::string> init_model_from_checkpoint(const std::string& checkpoint_dir, Gpt& model,
                                                    const CheckpointRole& role) {
  const int64_t saved_tp = saved_tp_size(read_trainer_json(checkpoint_dir), checkpoint_dir);
  ShardSet weights(checkpoint_dir, "model", saved_tp);
  std::vector<std::string> missing;
  for (auto& item : model->named_parameters()) {
    if (!weights.files.at(0)->has(item.key())) {
      missing.push_back(item.key());
      continue;
    }
    weights.load(item.key(), item.key(), item.value(), role);
  }
  for (auto& item : model->named_buffers()) {
    if (weights.files.at(0)->has(item.key())) weights.load(item.key(), item.key(), item.value(), role);
  }
  return missing;
}

void load_model_weights(const std::string& checkpoint_dir, Gpt& model) {
  CheckpointRole role;
  role.tp_rank = model->tensor_parallel().rank;
  role.tp_size = model->tensor_parallel().size;
  load_weights(checkpoint_dir, saved_tp_size(read_trainer_json(checkpoint_dir), checkpoint_dir), model, role);
}

TrainerState load_training_checkpoint(const std::string& checkpoint_dir, Gpt& model, AdamW& optimizer,
                                      const CheckpointRole& role) {
  const auto json = read_trainer_json(checkpoint_dir);
  const int64_t saved_tp = saved_tp_size(json, checkpoint_dir);
  if (saved_tp != role.tp_size)
    log::warn(strprintf("checkpoint %s was saved with parallel.tp=%lld; re-sharding it for parallel.tp=%lld",
                        checkpoint_dir.c_str(), static_cast<long long>(saved_tp), static_cast<long long>(role.tp_size)));
  load_weights(checkpoint_dir, saved_tp, model, role);

  // Whole or per-DP-rank optimizer files (older checkpoints: whole), into this optimizer's layout.
  const int64_t saved_dp_shards = json.contains("layout") ? json["layout"].value("optimizer_dp_shards", int64_t{1}) : 1;
  load_optimizer_files(checkpoint_dir, saved_tp, saved_dp_shards, optimizer, role.tp_rank, role.tp_size);

  SafetensorsFile rng(checkpoint_dir + "/rng.safetensors");
  for (const auto& device : rng_devices(optimizer.params().at(0))) {
    const std::string name = rng_name(device);
    if (!rng.has(name)) continue;  // e.g. resuming a CPU checkpoint on a GPU: only the CPU state exists
    const TensorView view = rng.view(name);
    auto state = torch::from_blob(const_cast<void*>(view.data), view.shape, torch::kByte).clone();
    at::Generator generator = at::globalContext().defaultGenerator(device);  // shares the global state
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  }

  TrainerState state;
  try {
    state.step = json.at("step").get<int64_t>();
    state.tokens_seen = json.at("tokens_seen").get<int64_t>();
    state.data_cursor = json.at("data_cursor");
    state.monitor = json.value("monitor", nlohmann::json());
    state.extra = json.value("extra", nlohmann::json::object());
    optimizer.set_step_count(json.at("optimizer_step_count").get<int64_t>());
  } catch (const nlohmann::json::exception& e) {
    KEEL_CHECK(false, checkpoint_dir << "/trainer_state.json: " << e.what());
  }
  return state;
}

}  // namespace keel
