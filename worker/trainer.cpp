// The single-worker training loop (see trainer.h).
//
// Step anatomy (one optimizer step = grad_accum micro-batches):
//   forward/backward per micro-batch -> loss and per-layer grad norms gathered in ONE host read
//   -> stability monitor verdict -> apply (clip, AdamW) | skip | rollback | abort | remedy restart
//   -> metrics.jsonl record -> periodic validation and checkpoint.
#include "worker/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>

#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/process.h"
#include "data/data_loader.h"
#include "data/dataset_meta.h"
#include "diagnostics/model_diagnostics.h"
#include "model/gpt.h"
#include "model/torch_compat.h"
#include "optim/adamw.h"
#include "optim/lr_schedule.h"
#include "stability/spike_conditions.h"
#include "stability/stability_monitor.h"
#include "worker/device_memory.h"
#include "worker/metrics_log.h"
#include "worker/progress.h"
#include "worker/train_checkpoint.h"

namespace keel {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

torch::Device pick_device(const std::string& device) {
  if (device == "cuda" || (device == "auto" && torch::cuda::is_available())) {
    KEEL_CHECK(torch::cuda::is_available(), "train.device=cuda but no CUDA device is available");
    return torch::Device(torch::kCUDA, 0);
  }
  return torch::Device(torch::kCPU);
}

// Prepares the dataset when missing, in a separate `keel-prepare` process (SentencePiece must not
// share a process with libprotobuf; see data/dataset_meta.h).
void ensure_dataset(const DataConfig& data) {
  if (dataset_ready(data.dir)) return;
  KEEL_CHECK(data.auto_prepare, "no prepared dataset in '" << data.dir
                                                           << "' (run `keel prepare` or set data.auto_prepare=true)");
  std::string text_files;
  for (const auto& file : data.text_files) text_files += (text_files.empty() ? "" : ", ") + nlohmann::json(file).dump();
  const int code = process::run({process::sibling_program("keel-prepare"), "--out", data.dir,
                                 "--set", "data.corpus_cache=" + data.corpus_cache,
                                 "--set", std::string("data.use_embedded_corpus=") + (data.use_embedded_corpus ? "true" : "false"),
                                 "--set", "data.text_files=[" + text_files + "]",
                                 "--set", "data.vocab_size=" + std::to_string(data.vocab_size),
                                 "--set", "data.val_fraction=" + std::to_string(data.val_fraction)});
  KEEL_CHECK(code == 0 && dataset_ready(data.dir), "preparing the dataset in '" << data.dir << "' failed (exit code "
                                                                                 << code << ")");
}

// Copies a batch of int32 token ids to an int64 (B, T) tensor on `device`.
torch::Tensor to_tensor(const std::vector<int32_t>& tokens, int64_t batch, int64_t seq, torch::Device device) {
  auto cpu = torch::from_blob(const_cast<int32_t*>(tokens.data()), {batch, seq}, torch::kInt).to(torch::kLong);
  return device.is_cpu() ? cpu : cpu.to(device, /*non_blocking=*/false);
}

class Trainer {
 public:
  Trainer(RunConfig config, TrainOptions options)
      : config_(std::move(config)),
        options_(std::move(options)),
        device_(pick_device(config_.train.device)),
        use_bf16_(device_.is_cuda() && config_.train.precision != "fp32"),
        monitor_(config_.stability),
        progress_(options_.interactive) {
    KEEL_CHECK(!(device_.is_cpu() && config_.train.precision == "bf16"),
               "train.precision=bf16 needs a CUDA device (CPU runs train in fp32)");
  }

  TrainResult run();

 private:
  void setup();
  void resume_if_asked();
  bool injection_fires(const std::string& name, int64_t at_step, int64_t step);
  double evaluate();
  void save_checkpoint(int64_t completed_steps);
  // restore_monitor=false on a rollback: the monitor keeps its rollback history.
  void restore_checkpoint(int64_t checkpoint_step, bool restore_monitor);
  void log_event(const StabilityEvent& event);
  double clip_and_step(double grad_norm, double clip_scale, double lr);
  TrainerState snapshot_state(int64_t completed_steps) const;

  RunConfig config_;
  TrainOptions options_;
  torch::Device device_;
  bool use_bf16_;
  StabilityMonitor monitor_;
  ProgressPrinter progress_;

  Gpt model_{nullptr};
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<DataLoader> train_loader_;
  std::vector<std::string> val_shards_;
  std::unique_ptr<checkpoint::CheckpointStore> store_;
  std::unique_ptr<JsonLinesLog> metrics_;
  std::unique_ptr<JsonLinesLog> events_;
  LrSchedule schedule_;
  std::vector<std::string> layer_names_;
  std::vector<std::vector<torch::Tensor>> layer_params_;
  std::vector<torch::Tensor> update_snapshot_;
  torch::Tensor probe_tokens_;  // (probe, T) fixed validation batch for the model diagnostics  // parameters before the update, for the update ratio

  int64_t start_step_ = 0;
  int64_t tokens_seen_ = 0;
  int64_t last_saved_step_ = -1;
  double best_val_loss_ = std::numeric_limits<double>::quiet_NaN();
  double last_val_loss_ = std::numeric_limits<double>::quiet_NaN();
  std::set<std::string> injections_done_;  // fault injections fire once per run, also across rollbacks
  double last_update_ratio_ = 0.0;
};

void Trainer::setup() {
  fs::make_dirs(options_.run_dir);
  const std::string checkpoint_root = options_.run_dir + "/checkpoints";
  store_ = std::make_unique<checkpoint::CheckpointStore>(checkpoint_root);
  store_->remove_stale_temporaries();
  if (!options_.resume) {
    KEEL_CHECK(store_->list_steps().empty(), "run directory '" << options_.run_dir
                                                               << "' already has checkpoints: pass --resume to "
                                                                  "continue it, or choose another --run-dir");
    for (const char* name : {"/metrics.jsonl", "/events.jsonl"}) {
      if (fs::exists(options_.run_dir + name)) fs::remove_all(options_.run_dir + name);
    }
  }
  fs::write_file_atomic(options_.run_dir + "/config.yaml", config_.to_yaml());
  if (config_.debug.any_enabled()) log::warn("FAULT INJECTION ON: " + config_.debug.describe());

  if (config_.train.threads > 0) torch::set_num_threads(static_cast<int>(config_.train.threads));
  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  if (device_.is_cuda()) torch::cuda::manual_seed_all(static_cast<uint64_t>(config_.train.seed));

  ensure_dataset(config_.data);
  const int64_t T = config_.seq_len();
  train_loader_ = std::make_unique<DataLoader>(glob_shards(config_.data.dir, config_.data.train_pattern),
                                               config_.train.batch_size, T);
  train_loader_->check_vocab(config_.model.vocab_size);
  val_shards_ = glob_shards(config_.data.dir, config_.data.val_pattern);

  model_ = Gpt(config_.model);
  model_->to(device_);
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  std::vector<bool> decay;
  for (const auto& item : model_->named_parameters()) {
    names.push_back(item.key());
    params.push_back(item.value());
    decay.push_back(model_->decays(item.key()));
  }
  AdamWOptions adam;
  adam.beta1 = config_.train.beta1;
  adam.beta2 = config_.train.beta2;
  adam.eps = config_.train.eps;
  adam.weight_decay = config_.train.weight_decay;
  optimizer_ = std::make_unique<AdamW>(names, params, decay, adam);
  for (auto& [name, group] : model_->layer_groups()) {
    layer_names_.push_back(name);
    layer_params_.push_back(group);
  }
  schedule_ = LrSchedule{config_.train.lr, config_.train.warmup_steps, config_.train.steps, config_.train.min_lr_ratio};

  log::info(strprintf("model: %lld parameters (%lld non-embedding), %lld layers, d=%lld, heads=%lld, recipe '%s', "
                      "device %s%s",
                      static_cast<long long>(model_->num_parameters()),
                      static_cast<long long>(model_->num_non_embedding_parameters()),
                      static_cast<long long>(config_.model.num_layers), static_cast<long long>(config_.model.d_model),
                      static_cast<long long>(config_.model.num_heads), config_.run.recipe.c_str(),
                      device_.str().c_str(), use_bf16_ ? " (bf16 autocast)" : ""));

  if (config_.diagnostics.every > 0) {
    DataLoader probe_loader(val_shards_, config_.diagnostics.probe_batch_size, T);
    auto batch = probe_loader.next();
    probe_tokens_ = to_tensor(batch.inputs, batch.batch_size, T, device_);
  }

  // "Spike No More" conditions on the freshly built model (before any resume changes the weights).
  {
    DataLoader probe_loader(val_shards_, std::min<int64_t>(config_.train.batch_size, 4), T);
    auto batch = probe_loader.next();
    auto report = check_spike_conditions(*model_, to_tensor(batch.inputs, batch.batch_size, T, device_));
    for (const auto& line : report.lines()) log::info("spike-no-more: " + line);
    if (report.warn) log::warn("spike-no-more: " + report.warning);
    fs::write_file_atomic(options_.run_dir + "/spike_conditions.json", report.to_json().dump(2) + "\n");
  }

  metrics_ = std::make_unique<JsonLinesLog>(options_.run_dir + "/metrics.jsonl");
  events_ = std::make_unique<JsonLinesLog>(options_.run_dir + "/events.jsonl");
}

void Trainer::resume_if_asked() {
  if (!options_.resume) return;
  std::vector<std::string> rejected;
  auto latest = store_->latest_valid(&rejected);
  for (const auto& why : rejected) {
    log::warn("resume: skipping damaged checkpoint: " + why);
  }
  if (!latest) {
    log::warn("--resume: no complete checkpoint in '" + options_.run_dir + "/checkpoints'; starting from step 0");
    return;
  }
  restore_checkpoint(*latest, /*restore_monitor=*/true);
  metrics_->truncate_from_step(start_step_);
  events_->truncate_from_step(start_step_);
  log::info("resumed from " + store_->path_of(*latest) + " at step " + std::to_string(start_step_));
}

void Trainer::restore_checkpoint(int64_t checkpoint_step, bool restore_monitor) {
  auto state = load_training_checkpoint(store_->path_of(checkpoint_step), model_, *optimizer_);
  start_step_ = state.step;
  tokens_seen_ = state.tokens_seen;
  train_loader_->set_cursor(DataCursor::from_json(state.data_cursor));
  if (restore_monitor && !state.monitor.is_null()) {
    monitor_.state_from_json(state.monitor);
    // The saved monitor state predates its own on_checkpoint_saved(C) call (see stability_monitor.h).
    monitor_.on_checkpoint_saved(checkpoint_step);
  }
  if (state.extra.contains("best_val_loss") && state.extra["best_val_loss"].is_number())
    best_val_loss_ = state.extra["best_val_loss"].get<double>();
  if (state.extra.contains("injections_done"))
    injections_done_ = state.extra["injections_done"].get<std::set<std::string>>();
  last_saved_step_ = checkpoint_step;
}

TrainerState Trainer::snapshot_state(int64_t completed_steps) const {
  TrainerState state;
  state.step = completed_steps;
  state.tokens_seen = tokens_seen_;
  state.data_cursor = train_loader_->cursor().to_json();
  state.monitor = monitor_.state_to_json();
  state.extra["best_val_loss"] = std::isnan(best_val_loss_) ? nlohmann::json() : nlohmann::json(best_val_loss_);
  state.extra["injections_done"] = injections_done_;
  state.extra["recipe"] = config_.run.recipe;
  return state;
}

void Trainer::save_checkpoint(int64_t completed_steps) {
  if (last_saved_step_ == completed_steps) return;
  const auto start = Clock::now();
  const std::string dir =
      save_training_checkpoint(*store_, model_, *optimizer_, snapshot_state(completed_steps), config_.to_yaml());
  last_saved_step_ = completed_steps;
  monitor_.on_checkpoint_saved(completed_steps);
  const auto before = store_->list_steps();
  store_->prune(config_.checkpoint.keep, monitor_.protected_checkpoints());
  const auto after = store_->list_steps();
  for (int64_t kept_or_deleted : before) {
    if (std::find(after.begin(), after.end(), kept_or_deleted) == after.end())
      monitor_.on_checkpoint_deleted(kept_or_deleted);
  }
  log::info(strprintf("checkpoint %s saved in %.2fs", dir.c_str(), seconds_since(start)));
}

bool Trainer::injection_fires(const std::string& name, int64_t at_step, int64_t step) {
  if (at_step < 0 || step != at_step || injections_done_.count(name)) return false;
  injections_done_.insert(name);
  log::warn("FAULT INJECTION: " + name + " at step " + std::to_string(step));
  return true;
}

double Trainer::evaluate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  DataLoader val_loader(val_shards_, config_.train.batch_size, config_.seq_len());
  torch::Tensor total = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
  for (int64_t i = 0; i < config_.train.eval_batches; ++i) {
    auto batch = val_loader.next();
    auto x = to_tensor(batch.inputs, batch.batch_size, batch.seq_len, device_);
    auto y = to_tensor(batch.targets, batch.batch_size, batch.seq_len, device_);
    compat::CudaBf16Autocast autocast(use_bf16_);
    total += model_->loss(x, y).detach().to(torch::kFloat);
  }
  model_->train();
  return total.item<double>() / static_cast<double>(config_.train.eval_batches);
}

double Trainer::clip_and_step(double grad_norm, double clip_scale, double lr) {
  torch::NoGradGuard no_grad;
  const double clip = config_.train.grad_clip * clip_scale;
  if (clip > 0 && grad_norm > clip) {
    const double factor = clip / (grad_norm + 1e-6);
    for (auto& p : optimizer_->params()) {
      if (p.grad().defined()) p.mutable_grad().mul_(factor);
    }
  }
  // Update-to-weight ratio ||W_after - W_before|| / ||W_before||, over all parameters.
  if (update_snapshot_.empty()) {
    for (const auto& p : optimizer_->params()) update_snapshot_.push_back(torch::empty_like(p));
  }
  const auto& params = optimizer_->params();
  for (size_t i = 0; i < params.size(); ++i) update_snapshot_[i].copy_(params[i]);
  optimizer_->step(lr);
  std::vector<torch::Tensor> weight_sq, delta_sq;
  for (size_t i = 0; i < params.size(); ++i) {
    weight_sq.push_back(update_snapshot_[i].pow(2).sum());
    delta_sq.push_back(update_snapshot_[i].sub_(params[i]).pow(2).sum());
  }
  auto sums = torch::stack({torch::stack(delta_sq).sum(), torch::stack(weight_sq).sum()}).to(torch::kCPU);
  const double denominator = std::sqrt(sums[1].item<double>());
  return denominator > 0 ? std::sqrt(sums[0].item<double>()) / denominator : 0.0;
}

void Trainer::log_event(const StabilityEvent& event) {
  auto record = event.to_json();
  events_->append(record);
  const std::string text = "stability: " + event.kind + " at step " + std::to_string(event.step) + " -> " +
                           event.action + " (" + event.reason + ")";
  log::warn(text);
}

TrainResult Trainer::run() {
  setup();
  resume_if_asked();
  TrainResult result;
  const int64_t B = config_.train.batch_size, T = config_.seq_len(), accum = config_.train.grad_accum;
  const int64_t tokens_per_step = B * T * accum;
  const int64_t total = config_.train.steps;
  const auto& debug = config_.debug;
  double step_time_ema = 0;
  double timed_seconds = 0;
  int64_t timed_tokens = 0;
  model_->train();

  int64_t step = start_step_;
  while (step < total) {
    if (config_.train.stop_at > 0 && step >= config_.train.stop_at) break;
    const auto step_start = Clock::now();
    optimizer_->zero_grad();
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
    for (int64_t micro = 0; micro < accum; ++micro) {
      auto batch = train_loader_->next();
      if (micro == 0 && injection_fires("bad_batch", debug.inject_bad_batch_at, step)) {
        // A batch of uniformly random tokens (a corrupted shard region): deterministic per step.
        auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(config_.train.seed * 7919 + step));
        auto noise = torch::randint(0, config_.data.vocab_size, {B * (T + 1)}, gen, torch::kInt);
        auto acc = noise.accessor<int32_t, 1>();
        for (int64_t b = 0; b < B; ++b) {
          for (int64_t t = 0; t < T; ++t) {
            batch.inputs[b * T + t] = acc[b * (T + 1) + t];
            batch.targets[b * T + t] = acc[b * (T + 1) + t + 1];
          }
        }
      }
      auto x = to_tensor(batch.inputs, B, T, device_);
      auto y = to_tensor(batch.targets, B, T, device_);
      torch::Tensor loss;
      {
        compat::CudaBf16Autocast autocast(use_bf16_);
        loss = model_->loss(x, y);
      }
      (loss / static_cast<double>(accum)).backward();
      loss_sum += loss.detach().to(torch::kFloat);
    }
    if (injection_fires("nan_grad", debug.inject_nan_grad_at, step)) {
      torch::NoGradGuard no_grad;
      optimizer_->params()[0].mutable_grad().fill_(std::numeric_limits<float>::quiet_NaN());
    }

    // One host read for the loss and every per-layer grad norm.
    std::vector<torch::Tensor> scalars = {loss_sum / static_cast<double>(accum)};
    for (const auto& group : layer_params_) {
      std::vector<torch::Tensor> squares;
      for (const auto& p : group) {
        if (p.grad().defined()) squares.push_back(p.grad().to(torch::kFloat).pow(2).sum());
      }
      scalars.push_back(squares.empty() ? torch::zeros({}, loss_sum.options()) : torch::stack(squares).sum());
    }
    auto host = torch::stack(scalars).to(torch::kCPU, torch::kDouble);
    const double* values = host.data_ptr<double>();
    StepSignals signals;
    signals.step = step;
    signals.loss = values[0];
    double grad_sq = 0;
    for (size_t i = 0; i < layer_params_.size(); ++i) {
      grad_sq += values[i + 1];
      signals.layer_grad_norms.push_back(std::sqrt(values[i + 1]));
    }
    signals.grad_norm = std::sqrt(grad_sq);
    signals.grads_finite = std::isfinite(signals.grad_norm);
    signals.update_ratio = last_update_ratio_;

    MonitorDecision decision;
    if (config_.stability.enabled) {
      decision = monitor_.observe(signals);
    } else {
      // Even with the monitor off, a non-finite update never reaches the weights.
      decision.action = (signals.grads_finite && std::isfinite(signals.loss)) ? Action::kApply : Action::kSkipUpdate;
    }
    for (const auto& event : decision.events) log_event(event);

    double lr = schedule_.at(step) * monitor_.lr_multiplier(step);
    const double spike_factor = injections_done_.count("lr_spike_done") ? 1.0 : debug.lr_factor_at(step);
    if (spike_factor != 1.0) {
      injection_fires("lr_spike", debug.inject_lr_spike_at, step);  // announced on its first step
      lr *= spike_factor;
      if (debug.lr_factor_at(step + 1) == 1.0) injections_done_.insert("lr_spike_done");
    }

    nlohmann::json record = {{"step", step}, {"loss", signals.loss}, {"grad_norm", signals.grad_norm}, {"lr", lr}};
    if (!decision.events.empty()) {
      // The step's stability events in the metrics stream too (their evidence is in events.jsonl).
      nlohmann::json kinds = nlohmann::json::array();
      for (const auto& event : decision.events) kinds.push_back(event.kind);
      record["events"] = kinds;
    }
    if (decision.action == Action::kApply) {
      last_update_ratio_ = clip_and_step(signals.grad_norm, decision.clip_scale, lr);
      record["update_ratio"] = last_update_ratio_;
    } else if (decision.action == Action::kSkipUpdate) {
      record["skipped"] = true;
    } else if (decision.action == Action::kRollback) {
      // Back to the last good checkpoint before the onset; skip the batches that led into it.
      injections_done_.insert("lr_spike_done");
      const std::set<std::string> fired = injections_done_;
      restore_checkpoint(decision.rollback_to_step, /*restore_monitor=*/false);
      injections_done_.insert(fired.begin(), fired.end());
      train_loader_->skip_batches(decision.skip_batches * accum);
      monitor_.on_rollback_done(decision.rollback_to_step, step);
      record["rollback_to"] = decision.rollback_to_step;
      metrics_->append(record);
      step = start_step_;
      continue;
    } else {
      // kAbort or kRemedyRestart: this run ends here; the launcher exits 3 or starts the child run.
      metrics_->append(record);
      progress_.finish();
      result.remedy_restart_requested = decision.action == Action::kRemedyRestart;
      result.exit_code = result.remedy_restart_requested ? kExitOk : kExitStabilityAbort;
      result.final_step = step;
      result.message = decision.abort_message;
      return result;
    }

    tokens_seen_ += tokens_per_step;
    const int64_t completed = step + 1;
    const bool last = completed == total || completed == config_.train.stop_at;
    if ((config_.train.eval_every > 0 && completed % config_.train.eval_every == 0) || completed == total) {
      last_val_loss_ = evaluate();
      if (std::isnan(best_val_loss_) || last_val_loss_ < best_val_loss_) best_val_loss_ = last_val_loss_;
      record["val_loss"] = last_val_loss_;
      record["val_perplexity"] = std::exp(last_val_loss_);
    }
    if (config_.diagnostics.every > 0 && completed % config_.diagnostics.every == 0) {
      // On the fixed probe batch, without gradients and with the RNG untouched (model_diagnostics.h).
      for (const auto& [name, value] : compute_diagnostics(*model_, probe_tokens_, config_.diagnostics).flat_metrics())
        record[name] = value;
    }
    const double step_seconds = seconds_since(step_start);
    if (step - start_step_ >= 3) {  // the first steps pay for allocator and kernel warm-up
      timed_tokens += tokens_per_step;
      timed_seconds += step_seconds;
    }
    step_time_ema = step == start_step_ ? step_seconds : 0.9 * step_time_ema + 0.1 * step_seconds;
    record["step_time"] = step_seconds;
    record["tokens_per_second"] = static_cast<double>(tokens_per_step) / step_seconds;
    record["tokens_seen"] = tokens_seen_;
    if (device_.is_cuda()) record["gpu_memory_peak_bytes"] = cuda_peak_allocated_bytes(device_.index());
    nlohmann::json layer_norms;
    for (size_t i = 0; i < layer_names_.size(); ++i) layer_norms[layer_names_[i]] = signals.layer_grad_norms[i];
    record["layer_grad_norms"] = layer_norms;
    metrics_->append(record);

    if (completed % config_.train.log_every == 0 || last || completed == 1) {
      ProgressSample sample{completed, total, signals.loss, signals.grad_norm, lr,
                            static_cast<double>(tokens_per_step) / step_time_ema,
                            step_time_ema * static_cast<double>(total - completed)};
      progress_.update(sample);
      if (record.contains("val_loss"))
        progress_.message(strprintf("step %lld: val loss %.4f (perplexity %.1f)", static_cast<long long>(completed), last_val_loss_,
                                      std::exp(last_val_loss_)));
    }
    if ((config_.checkpoint.every > 0 && completed % config_.checkpoint.every == 0) ||
        (last && config_.checkpoint.save_final))
      save_checkpoint(completed);
    step = completed;
  }
  progress_.finish();
  if (device_.is_cuda()) {
    result.peak_device_memory_bytes = cuda_peak_allocated_bytes(device_.index());
    log::info(strprintf("peak GPU memory allocated: %.2f GiB", result.peak_device_memory_bytes / 1073741824.0));
  }
  result.final_step = step;
  if (step < total && config_.checkpoint.save_final) save_checkpoint(step);
  result.final_val_loss = last_val_loss_;
  result.mean_tokens_per_second = timed_seconds > 0 ? static_cast<double>(timed_tokens) / timed_seconds : 0.0;
  result.exit_code = kExitOk;
  return result;
}

}  // namespace

TrainResult train_run(RunConfig config, const TrainOptions& options) {
  Trainer trainer(std::move(config), options);
  return trainer.run();
}

}  // namespace keel
