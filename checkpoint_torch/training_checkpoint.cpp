// Training checkpoints: LibTorch tensors <-> the Torch-free checkpoint format (see train_checkpoint.h).
#include "checkpoint_torch/training_checkpoint.h"

#include <ATen/Context.h>

#include <map>
#include <mutex>

#include "checkpoint/safetensors.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"

namespace keel {
using checkpoint::DType;
using checkpoint::PendingCheckpoint;
using checkpoint::SafetensorsFile;
using checkpoint::TensorView;
namespace {

DType dtype_of(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return DType::F32;
    case torch::kDouble: return DType::F64;
    case torch::kHalf: return DType::F16;
    case torch::kBFloat16: return DType::BF16;
    case torch::kLong: return DType::I64;
    case torch::kInt: return DType::I32;
    case torch::kShort: return DType::I16;
    case torch::kChar: return DType::I8;
    case torch::kByte: return DType::U8;
    case torch::kBool: return DType::BOOL;
    default: KEEL_CHECK(false, "unsupported tensor dtype " << t.scalar_type());
  }
}

// Host copies of tensors (kept alive while the file is written) and their views.
struct TensorBundle {
  std::vector<torch::Tensor> host;
  std::vector<TensorView> views;
  void add(const std::string& name, const torch::Tensor& tensor) {
    host.push_back(tensor.detach().to(torch::kCPU).contiguous());
    const auto& t = host.back();
    views.push_back(TensorView{name, dtype_of(t), t.sizes().vec(), t.data_ptr(), t.nbytes()});
  }
};

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

// The saved shards of one kind of file ("model" or "optimizer") and the TP degree they were saved with.
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

ShardWriteReport write_checkpoint_files(const std::string& dir, Gpt& model, AdamW& optimizer,
                                        const TrainerState& state, const std::string& config_yaml,
                                        const CheckpointRole& role) {
  ShardWriteReport report;
  report.shard_name = "tp" + std::to_string(role.tp_rank);
  const std::string suffix = shard_suffix(role.tp_rank, role.tp_size);
  if (role.writes_shard) {
    TensorBundle weights;
    for (const auto& item : model->named_parameters()) weights.add(item.key(), item.value());
    for (const auto& item : model->named_buffers()) weights.add(item.key(), item.value());
    const std::string model_file = dir + "/model" + suffix + ".safetensors";
    write_safetensors(model_file, weights.views,
                      {{"format", "keel"}, {"step", std::to_string(state.step)},
                       {"tp_rank", std::to_string(role.tp_rank)}, {"tp_size", std::to_string(role.tp_size)}});

    TensorBundle moments;
    const auto& names = optimizer.names();
    for (size_t i = 0; i < names.size(); ++i) {
      // Whole tensors, sharded optimizer or not (its moments were gathered for the save).
      moments.add("exp_avg." + names[i], optimizer.moment_for_save(0, i));
      moments.add("exp_avg_sq." + names[i], optimizer.moment_for_save(1, i));
    }
    const std::string optimizer_file = dir + "/optimizer" + suffix + ".safetensors";
    write_safetensors(optimizer_file, moments.views, {{"step_count", std::to_string(optimizer.step_count())}});
    report.crc32 = fs::crc32_file(model_file);
    report.bytes = fs::file_size(model_file) + fs::file_size(optimizer_file);
  }
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
                                          {"shard_optimizer", optimizer.sharded()}}},
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

  ShardSet moments(checkpoint_dir, "optimizer", saved_tp);
  const auto& names = optimizer.names();
  for (size_t i = 0; i < names.size(); ++i) {
    moments.load("exp_avg." + names[i], names[i], optimizer.moment_load_target(0, i), role);
    moments.load("exp_avg_sq." + names[i], names[i], optimizer.moment_load_target(1, i), role);
  }
  optimizer.finish_moment_load();  // a sharded optimizer keeps its own range of the whole moments

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
