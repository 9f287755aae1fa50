// The training loop of one worker (see trainer.h). Trainer::run reads as the phases of a step:
//
//   batch -> forward/backward per micro-batch -> reduce over DP -> signals (loss and per-layer grad
//   norms in ONE host read) -> the monitor's verdict -> apply (clip, AdamW) | skip | rollback |
//   abort | remedy restart -> evaluate / diagnose -> record -> checkpoint / preempt.
//
// Its parts live in files of their own: step_signals.h (grad norms, clipping, update ratio),
// fault_injector.h (debug.inject_*), step_record.h (metrics.jsonl and the coordinator's stream),
// checkpoint_committer.h (one save path for any world size, the ledger of checkpoints),
// world_agreement.h (verdicts and preemption agreed over the world), training_data.h.
//
// Distributed (options.groups set, one process per rank): the batch is split over the DP group
// (DataLoader rank = dp_rank) and gradients are averaged over it (GradientBucketer; overlapped with
// backward on GPUs); the model is split over the TP group (model/gpt.h). The loss is averaged over
// DP and the per-layer squared grad norms of split tensors summed over TP, so every rank feeds the
// monitor the same global numbers; the verdict hashes are compared across the world every step and
// a disagreement stops the job. Rollbacks restore the same committed step on every rank. World
// rank 0 writes the run's logs.
#include "worker/trainer_internal.h"

#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <limits>
#include <optional>

#include "checkpoint_torch/training_checkpoint.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/preemption.h"
#include "data/token_statistics.h"
#include "device/device_memory.h"
#include "device/select_device.h"
#include "diagnostics/model_diagnostics.h"
#include "diagnostics/spike_conditions.h"
#include "metrics/jsonl_log.h"
#include "metrics/metric_keys.h"
#include "model/activation_checkpoint.h"
#include "model/gpt.h"
#include "model/torch_compat.h"
#include "optim/adamw.h"
#include "optim/lr_schedule.h"
#include "parallel/gradient_bucketer.h"
#include "parallel/process_groups.h"
#include "parallel/torch_adapter.h"
#include "rpc/coordinator_client.h"
#include "stability/stability_monitor.h"
#include "worker/checkpoint_committer.h"
#include "worker/fault_injector.h"
#include "worker/progress.h"
#include "worker/step_record.h"
#include "worker/step_signals.h"
#include "worker/training_data.h"
#include "worker/world_agreement.h"

namespace keel {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace


TrainResult Trainer::run() {
  setup();
  resume_if_asked();
  init_from_checkpoint();
  // A fresh run can always rebuild its initial state from the seed: a rollback target before the
  // first checkpoint (a resumed run carries this in the monitor's saved state).
  if (start_step_ == 0) monitor_->on_initial_state();
  // Every rank's optimizer state (its 1/dp share when sharded), once per process, for /metrics.
  if (options_.coordinator)
    options_.coordinator->report_metrics_async(
        start_step_, {{metric_key::kOptimizerStateBytes, static_cast<double>(optimizer_->state_bytes())}});
  const int64_t total = config_.train.steps;
  model_->train();

  int64_t step = start_step_;
  bool preempted = false;
  while (step < total) {
    if (config_.train.stop_at > 0 && step >= config_.train.stop_at) break;
    if (options_.coordinator && options_.coordinator->job_failed())
      throw KeelError("the job failed: " + options_.coordinator->failure_message());
    const auto step_start = Clock::now();
    phases_->start(step);
    const DataCursor data_before = train_loader_->cursor();

    // Batch, forward and backward; gradients and loss averaged over DP.
    torch::Tensor loss_sum = forward_backward(step);
    phases_->mark(phase_name::kForwardBackward);
    reduce_over_dp(step, loss_sum);
    phases_->mark(phase_name::kReduce);

    // Signals (one host read) and the monitor's verdict, which must come before the update.
    StepSignals signals = read_signals(step, loss_sum / static_cast<double>(config_.train.grad_accum));
    signals.data = data_position(data_before, train_loader_->cursor(), tokens_per_step_);
    const MonitorDecision decision = judge(signals);
    phases_->mark(phase_name::kSignals);
    const double lr = learning_rate(step);
    nlohmann::json record = recorder_->open(step, signals.loss, signals.grad_norm, lr);
    record_z_loss(record);
    if (!decision.events.empty()) {
      // The step's stability events in the metrics stream too (their evidence is in events.jsonl).
      nlohmann::json kinds = nlohmann::json::array();
      for (const auto& event : decision.events) kinds.push_back(event.kind);
      record[metric_key::kEvents] = kinds;
    }
    if (!decision.baseline_shift.empty()) {
      record[metric_key::kBaselineShift] = true;
      if (lead_) log::info("stability: step " + std::to_string(step) + ": " + decision.baseline_shift);
    }

    // Apply, skip, roll back or end the run.
    if (decision.action == Action::kApply) {
      apply_update(signals, decision, lr, record);
      phases_->mark(phase_name::kUpdate);
    } else if (decision.action == Action::kSkipUpdate) {
      record[metric_key::kSkipped] = true;
    } else if (decision.action == Action::kRollback) {
      roll_back(decision, step, record);
      step = start_step_;
      continue;
    } else {
      return end_by_monitor(decision, step, record);
    }
    tokens_seen_ += tokens_per_step_;
    const int64_t completed = step + 1;

    // Evaluate and diagnose, then record the step.
    evaluate_and_diagnose(completed, record);
    record_phases(record);
    recorder_->close(record, step, start_step_, seconds_since(step_start), tokens_seen_, signals.layer_grad_norms);
    show_progress(completed, signals, lr, record);

    // Checkpoint; leave after saving when preempted.
    if (checkpoint_due(completed)) save_checkpoint(completed);
    step = completed;
    if (step < total && preemption_agreed(groups_->world(), device_)) {
      // Preempted (SIGTERM/SIGUSR1, forwarded by the launcher): this step is done; save it and leave
      // so the scheduler can requeue the job, which resumes from here exactly.
      save_checkpoint(step);
      preempted = true;
      break;
    }
  }
  return finish(step, preempted);
}

void Trainer::record_phases(nlohmann::json& record) {
  nlohmann::json host = nlohmann::json::object();
  for (const auto& [phase, ms] : phases_->host_phases()) host[phase] = ms;
  record[metric_key::kHostPhaseMs] = host;
  int64_t device_step = 0;
  PhaseTimes device;
  if (phases_->take_device_phases(device_step, device)) {
    nlohmann::json times = nlohmann::json::object();
    for (const auto& [phase, ms] : device) times[phase] = ms;
    record[metric_key::kDevicePhaseMs] = times;
    record[metric_key::kDevicePhaseStep] = device_step;
  }
}

torch::Tensor Trainer::forward_backward(int64_t step) {
  const int64_t B = config_.train.batch_size, T = config_.seq_len(), accum = config_.train.grad_accum;
  optimizer_->zero_grad();
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
  for (int64_t micro = 0; micro < accum; ++micro) {
    auto batch = train_loader_->next();
    if (micro == 0) faults_->corrupt_batch(step, B, T, batch.inputs, batch.targets);
    auto x = to_device_tokens(batch.inputs, B, T, device_);   // (B, T)
    auto y = to_device_tokens(batch.targets, B, T, device_);  // (B, T)
    LmLossTerms loss;
    {
      compat::CudaBf16Autocast autocast(use_bf16_);
      loss = micro_batch_loss(x, y);
    }
    // The objective adds train.z_loss x z; the loss the monitor and the logs see is the
    // cross-entropy alone, comparable across recipes.
    const torch::Tensor objective =
        loss.z.defined() ? loss.cross_entropy + config_.train.z_loss * loss.z : loss.cross_entropy;
    bucket_in_backward_ = bucketer_ && device_.is_cuda() && micro == accum - 1;
    (objective / static_cast<double>(accum)).backward();
    bucket_in_backward_ = false;
    loss_sum += loss.cross_entropy.detach().to(torch::kFloat);
    if (loss.z.defined()) z_loss_sum_ = z_loss_sum_.defined() ? z_loss_sum_ + loss.z.detach() : loss.z.detach();
  }
  return loss_sum;
}

void Trainer::record_z_loss(nlohmann::json& record) {
  if (!z_loss_sum_.defined()) return;
  torch::Tensor z = z_loss_sum_.to(torch::kFloat) / static_cast<double>(config_.train.grad_accum);
  if (groups_->dp_size() > 1) parallel::all_reduce(groups_->dp(), z, parallel::ReduceOp::kAvg);
  record[metric_key::kZLoss] = z.item<double>();
  z_loss_sum_ = torch::Tensor();
}

void Trainer::reduce_over_dp(int64_t step, torch::Tensor& loss_sum) {
  if (sharding_ && sharding_->shards_gradients()) {
    // ZeRO-2: an injected NaN goes in before the reduce-scatter, which then carries it to a range.
    faults_->poison_gradients(step, optimizer_->params());
    sharding_->reduce_scatter_gradients();
  } else {
    // Gradients averaged over the DP group (on GPUs most buckets are already in flight).
    if (bucketer_) bucketer_->finish();
    faults_->poison_gradients(step, optimizer_->params());
  }
  if (groups_->dp_size() > 1) parallel::all_reduce(groups_->dp(), loss_sum, parallel::ReduceOp::kAvg);
}

StepSignals Trainer::read_signals(int64_t step, const torch::Tensor& mean_loss) {
  if (sharding_ && sharding_->shards_gradients())
    return signals_->read(step, mean_loss, last_update_ratio_, sharding_->gradient_squares());
  return signals_->read(step, mean_loss, last_update_ratio_);
}

MonitorDecision Trainer::judge(const StepSignals& signals) {
  // The monitor always judges (disabled, it only keeps a non-finite update off the weights).
  MonitorDecision decision = monitor_->observe(signals);
  for (const auto& event : decision.events) log_event(event);
  // Every rank must act alike: compare the verdicts (one tiny collective).
  if (groups_->world().size() > 1)
    check_agreement(groups_->world(), device_, monitor_->verdict_hash(signals.step),
                    "the stability verdict of step " + std::to_string(signals.step));
  return decision;
}

double Trainer::learning_rate(int64_t step) {
  return schedule_.at(step) * monitor_->lr_multiplier(step) * faults_->lr_factor(step);
}

void Trainer::apply_update(const StepSignals& signals, const MonitorDecision& decision, double lr,
                           nlohmann::json& record) {
  // clip_norm > 0: an absolute limit on the global norm besides train.grad_clip x clip_scale.
  double clip = config_.train.grad_clip * (decision.clip_scale * monitor_->cooldown_clip_scale(signals.step));
  if (decision.clip_norm > 0) clip = clip > 0 ? std::min(clip, decision.clip_norm) : decision.clip_norm;
  if (sharding_ && sharding_->shards_gradients()) {
    const double factor = StepSignalReader::clip_factor(signals.grad_norm, clip);
    if (factor != 1.0) sharding_->scale_gradient(factor);
  } else {
    signals_->clip_gradients(signals.grad_norm, clip);
  }
  last_update_ratio_ = signals_->step_and_measure_update(*optimizer_, lr, [this] {
    if (sharding_) sharding_->all_gather_parameters();  // every rank updated its own share
  });
  record[metric_key::kUpdateRatio] = last_update_ratio_;
}

void Trainer::roll_back(const MonitorDecision& decision, int64_t step, nlohmann::json& record) {
  // Back to the last good checkpoint before the onset (or the initial state); the data continues
  // after what this timeline consumed up to the onset.
  faults_->on_rollback();
  const int64_t tokens_before = tokens_seen_ + tokens_per_step_;  // this step's batch was read too
  if (decision.restart_from_initial)
    reinitialize();
  else
    restore_checkpoint(decision.rollback_to_step, /*restore_monitor=*/false);
  const DataCursor restored_cursor = train_loader_->cursor();
  if (decision.resume_data.known()) {
    train_loader_->set_cursor({decision.resume_data.shard, decision.resume_data.offset, decision.resume_data.epoch});
  } else {
    train_loader_->skip_batches(decision.skip_batches * config_.train.grad_accum);
  }
  monitor_->on_rollback_done(decision.rollback_to_step, step);
  last_update_ratio_ = 0.0;  // the last update belonged to the abandoned timeline
  checkpoints_->abandon_after(decision.rollback_to_step, step);
  record[metric_key::kRollbackTo] = decision.rollback_to_step;
  record[metric_key::kRolledBackTokens] = tokens_before - tokens_seen_;
  if (!lead_) return;
  recorder_->append(record);
  const DataCursor resumed = train_loader_->cursor();
  log::warn(strprintf("stability: %s; skipped data: epoch %lld shard %lld offset %lld -> epoch %lld shard %lld offset %lld; "
                      "%lld trained tokens discarded",
                      decision.summary.c_str(), static_cast<long long>(restored_cursor.epoch),
                      static_cast<long long>(restored_cursor.shard_index), static_cast<long long>(restored_cursor.position),
                      static_cast<long long>(resumed.epoch), static_cast<long long>(resumed.shard_index),
                      static_cast<long long>(resumed.position), static_cast<long long>(tokens_before - tokens_seen_)));
}

TrainResult Trainer::end_by_monitor(const MonitorDecision& decision, int64_t step, const nlohmann::json& record) {
  // kAbort or kRemedyRestart: this run ends here; the launcher exits 3 or starts the child run.
  if (lead_) {
    recorder_->append(record);
    progress_.finish();
  }
  TrainResult result;
  result.remedy_restart_requested = decision.action == Action::kRemedyRestart;
  result.lr_scale = decision.lr_scale;
  result.exit_code = result.remedy_restart_requested ? kExitOk : kExitStabilityAbort;
  result.final_step = step;
  result.final_val_loss = last_val_loss_;
  result.message = decision.abort_message;
  result.optimizer_state_bytes = optimizer_->state_bytes();
  return result;
}

void Trainer::evaluate_and_diagnose(int64_t completed, nlohmann::json& record) {
  if ((config_.train.eval_every > 0 && completed % config_.train.eval_every == 0) || completed == config_.train.steps) {
    last_val_loss_ = evaluate();
    if (std::isnan(best_val_loss_) || last_val_loss_ < best_val_loss_) best_val_loss_ = last_val_loss_;
    for (const auto& event : monitor_->observe_validation(completed, last_val_loss_)) log_event(event);
    record[metric_key::kValLoss] = last_val_loss_;
    record[metric_key::kValPerplexity] = std::exp(last_val_loss_);
  }
  if (config_.diagnostics.every > 0 && completed % config_.diagnostics.every == 0 && groups_->dp_rank() == 0) {
    // On the fixed probe batch, without gradients and with the RNG untouched (model_diagnostics.h).
    // Collective over the TP group (heads and MLP units are split), so every rank of the lead's
    // TP group (DP rank 0) computes them; DP replicas hold the same model and skip them.
    auto diagnostics = compute_diagnostics(*model_, probe_tokens_, config_.diagnostics);
    if (lead_)
      for (const auto& [name, value] : diagnostics.flat_metrics()) record[name] = value;
  }
}

void Trainer::show_progress(int64_t completed, const StepSignals& signals, double lr, const nlohmann::json& record) {
  const int64_t total = config_.train.steps;
  const bool last = completed == total || completed == config_.train.stop_at;
  if (!lead_ || !(completed % config_.train.log_every == 0 || last || completed == 1)) return;
  const double step_time = recorder_->step_time_ema();
  progress_.update(ProgressSample{completed, total, signals.loss, signals.grad_norm, lr,
                                  static_cast<double>(tokens_per_step_) / step_time,
                                  step_time * static_cast<double>(total - completed)});
  if (record.contains(metric_key::kValLoss))
    progress_.message(strprintf("step %lld: val loss %.4f (perplexity %.1f)", static_cast<long long>(completed),
                                last_val_loss_, std::exp(last_val_loss_)));
}

bool Trainer::checkpoint_due(int64_t completed) const {
  const bool last = completed == config_.train.steps || completed == config_.train.stop_at;
  return (config_.checkpoint.every > 0 && completed % config_.checkpoint.every == 0) ||
         (last && config_.checkpoint.save_final);
}

TrainResult Trainer::finish(int64_t step, bool preempted) {
  TrainResult result;
  result.optimizer_state_bytes = optimizer_->state_bytes();
  if (lead_) progress_.finish();
  if (device_.is_cuda()) {
    result.peak_device_memory_bytes = cuda_peak_allocated_bytes(device_.index());
    log::info(strprintf("peak GPU memory allocated: %.2f GiB", result.peak_device_memory_bytes / 1073741824.0));
  }
  result.final_step = step;
  if (step < config_.train.steps && config_.checkpoint.save_final) save_checkpoint(step);
  result.final_val_loss = last_val_loss_;
  result.preempted = preempted;
  if (preempted) {
    const int sig = preemption::signal_number();
    result.message = (sig == SIGINT ? std::string("interrupted by Ctrl-C") : "preempted by signal " + std::to_string(sig)) +
                     " after step " + std::to_string(step) + "; checkpoint " + checkpoints_->store().path_of(step) + " saved";
    if (lead_) log::warn(result.message);
  }
  result.mean_tokens_per_second = recorder_->mean_tokens_per_second();
  result.exit_code = preempted ? kExitPreempted : kExitOk;
  return result;
}

double Trainer::evaluate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  DataLoader val_loader(val_shards_, config_.train.batch_size, config_.seq_len(), groups_->dp_rank(),
                        groups_->dp_size());
  torch::Tensor total = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
  for (int64_t i = 0; i < config_.train.eval_batches; ++i) {
    auto batch = val_loader.next();
    auto x = to_device_tokens(batch.inputs, batch.batch_size, batch.seq_len, device_);
    auto y = to_device_tokens(batch.targets, batch.batch_size, batch.seq_len, device_);
    compat::CudaBf16Autocast autocast(use_bf16_);
    total += model_->loss(x, y).detach().to(torch::kFloat);
  }
  model_->train();
  if (groups_->dp_size() > 1) parallel::all_reduce(groups_->dp(), total, parallel::ReduceOp::kAvg);
  return total.item<double>() / static_cast<double>(config_.train.eval_batches);
}

LmLossTerms Trainer::micro_batch_loss(const torch::Tensor& x, const torch::Tensor& y) {
  const bool want_z = config_.train.z_loss > 0;
  if (config_.train.activation_checkpointing) return activation_checkpointed_loss_terms(*model_, x, y, want_z);
  return model_->loss_terms(x, y, want_z);
}

TrainerState Trainer::snapshot_state(int64_t completed_steps) const {
  TrainerState state;
  state.step = completed_steps;
  state.tokens_seen = tokens_seen_;
  state.data_cursor = train_loader_->cursor().to_json();
  state.monitor = monitor_->state_to_json();
  state.extra["best_val_loss"] = std::isnan(best_val_loss_) ? nlohmann::json() : nlohmann::json(best_val_loss_);
  state.extra["injections_done"] = faults_->to_json();
  state.extra["last_update_ratio"] = last_update_ratio_;
  state.extra["recipe"] = config_.run.recipe;
  return state;
}

void Trainer::save_checkpoint(int64_t completed_steps) {
  // A sharded optimizer needs no gathering: each DP rank writes the moments of its own range.
  checkpoints_->save(model_, *optimizer_, snapshot_state(completed_steps), config_.to_yaml());
}

void Trainer::restore_checkpoint(int64_t checkpoint_step, bool restore_monitor) {
  TrainerState state = checkpoints_->restore(checkpoint_step, model_, *optimizer_);
  start_step_ = state.step;
  tokens_seen_ = state.tokens_seen;
  train_loader_->set_cursor(DataCursor::from_json(state.data_cursor));
  if (state.extra.contains("best_val_loss") && state.extra["best_val_loss"].is_number())
    best_val_loss_ = state.extra["best_val_loss"].get<double>();
  if (!restore_monitor) return;  // a rollback: the monitor and the fired faults stay as they are
  if (!state.monitor.is_null()) {
    monitor_->state_from_json(state.monitor);
    // The saved monitor state predates its own on_checkpoint_saved(C) call (see stability_monitor.h).
    monitor_->on_checkpoint_saved(checkpoint_step);
    // The first step after C is judged with the ratio of update C-1, as in the uninterrupted run.
    if (state.extra.contains("last_update_ratio") && state.extra["last_update_ratio"].is_number())
      last_update_ratio_ = state.extra["last_update_ratio"].get<double>();
  }
  if (state.extra.contains("injections_done")) faults_->from_json(state.extra["injections_done"]);
}

void Trainer::log_event(StabilityEvent event) {
  if (!lead_) return;
  describe_data(event.data, *train_loader_, eos_id_);
  auto record = event.to_json();
  events_->append(record);
  if (options_.coordinator)
    options_.coordinator->report_event_async(event.kind, event.step, record.dump(), event.action);
  log::warn("stability: " + event.kind + " at step " + std::to_string(event.step) + " -> " + event.action + " (" +
            event.reason + "; data: " + event.data.describe() + ")");
}

TrainResult train_run(RunConfig config, const TrainOptions& options) {
  Trainer trainer(std::move(config), options);
  return trainer.run();
}

}  // namespace keel
