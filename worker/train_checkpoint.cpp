// Training checkpoints: LibTorch tensors <-> the Torch-free checkpoint format (see train_checkpoint.h).
#include "worker/train_checkpoint.h"

#include <ATen/Context.h>

#include <map>
#include <mutex>

#include "checkpoint/safetensors.h"
#include "common/check.h"
#include "common/fs.h"

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

}  // namespace

std::string save_training_checkpoint(checkpoint::CheckpointStore& store, Gpt& model, AdamW& optimizer,
                                     const TrainerState& state, const std::string& config_yaml) {
  PendingCheckpoint pending = store.begin(state.step);

  TensorBundle weights;
  for (const auto& item : model->named_parameters()) weights.add(item.key(), item.value());
  for (const auto& item : model->named_buffers()) weights.add(item.key(), item.value());
  write_safetensors(pending.file("model.safetensors"), weights.views,
                    {{"format", "keel"}, {"step", std::to_string(state.step)}});

  TensorBundle moments;
  const auto& names = optimizer.names();
  for (size_t i = 0; i < names.size(); ++i) {
    moments.add("exp_avg." + names[i], optimizer.exp_avg()[i]);
    moments.add("exp_avg_sq." + names[i], optimizer.exp_avg_sq()[i]);
  }
  write_safetensors(pending.file("optimizer.safetensors"), moments.views,
                    {{"step_count", std::to_string(optimizer.step_count())}});

  TensorBundle rng;
  for (const auto& device : rng_devices(optimizer.params().at(0)))
    rng.add(rng_name(device), at::globalContext().defaultGenerator(device).get_state());
  write_safetensors(pending.file("rng.safetensors"), rng.views);

  nlohmann::json trainer = {{"step", state.step},
                            {"tokens_seen", state.tokens_seen},
                            {"data_cursor", state.data_cursor},
                            {"monitor", state.monitor},
                            {"optimizer_step_count", optimizer.step_count()},
                            {"extra", state.extra}};
  const std::string trainer_text = trainer.dump(2) + "\n";
  fs::write_file_durable(pending.file("trainer_state.json"), trainer_text.data(), trainer_text.size());
  fs::write_file_durable(pending.file("config.yaml"), config_yaml.data(), config_yaml.size());
  return store.commit(std::move(pending), {{"tokens_seen", state.tokens_seen}});
}

void load_model_weights(const std::string& checkpoint_dir, Gpt& model) {
  SafetensorsFile file(checkpoint_dir + "/model.safetensors");
  for (auto& item : model->named_parameters()) copy_into(file, item.key(), item.value());
  for (auto& item : model->named_buffers()) copy_into(file, item.key(), item.value());
}

TrainerState load_training_checkpoint(const std::string& checkpoint_dir, Gpt& model, AdamW& optimizer) {
  load_model_weights(checkpoint_dir, model);

  SafetensorsFile moments(checkpoint_dir + "/optimizer.safetensors");
  const auto& names = optimizer.names();
  for (size_t i = 0; i < names.size(); ++i) {
    copy_into(moments, "exp_avg." + names[i], optimizer.exp_avg()[i]);
    copy_into(moments, "exp_avg_sq." + names[i], optimizer.exp_avg_sq()[i]);
  }

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

  const std::string text = fs::read_file(checkpoint_dir + "/trainer_state.json");
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  KEEL_CHECK(!json.is_discarded() && json.is_object(), checkpoint_dir << "/trainer_state.json is not valid JSON");
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
