// The Trainer behind train_run() (trainer.h), shared by its two source files: trainer.cpp (the
// loop and the phases of a step) and trainer_setup.cpp (building the run, resuming it, rebuilding
// its initial state). Internal to worker/: nothing outside includes it.
#pragma once

#include <torch/torch.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "data/data_loader.h"
#include "device/phase_clock.h"
#include "metrics/jsonl_log.h"
#include "model/gpt.h"
#include "model/lm_loss.h"
#include "optim/adamw.h"
#include "optim/lr_schedule.h"
#include "parallel/gradient_bucketer.h"
#include "parallel/process_groups.h"
#include "stability/stability_monitor.h"
#include "worker/checkpoint_committer.h"
#include "worker/fault_injector.h"
#include "worker/optimizer_sharding.h"
#include "worker/progress.h"
#include "worker/step_record.h"
#include "worker/step_signals.h"
#include "worker/trainer.h"

namespace keel {

class Trainer {
 public:
  Trainer(RunConfig config, TrainOptions options);
  TrainResult run();

 private:
  // Set-up (trainer_setup.cpp): run directory, data, monitor, model, optimizer, reducers, logs.
  void setup();
  void build_model_and_optimizer();
  void check_spike_conditions_once();
  // The stability monitor, told what it needs about this run (batch, length, data, vocabulary).
  void build_monitor(const std::vector<std::string>& train_shards);
  void resume_if_asked();
  void init_from_checkpoint();  // train.init_from (keel uptrain): start from another run's weights
  // The initial state again (a restart ordered by the monitor): parameters from the seed (and
  // train.init_from), AdamW moments zero, the data cursor at the start.
  void reinitialize();

  // The phases of one step.
  torch::Tensor forward_backward(int64_t step);  // () float: the micro-batches' summed loss
  // Gradients averaged over DP (all-reduced, or reduce-scattered to each rank's range with ZeRO-2)
  // and the loss; an injected NaN gradient goes in here.
  void reduce_over_dp(int64_t step, torch::Tensor& loss_sum);
  // The step's signals from the reduced gradients (whole, or ZeRO-2's ranges).
  StepSignals read_signals(int64_t step, const torch::Tensor& mean_loss);
  MonitorDecision judge(const StepSignals& signals);
  double learning_rate(int64_t step);
  void apply_update(const StepSignals& signals, const MonitorDecision& decision, double lr, nlohmann::json& record);
  void roll_back(const MonitorDecision& decision, int64_t step, nlohmann::json& record);
  TrainResult end_by_monitor(const MonitorDecision& decision, int64_t step, const nlohmann::json& record);
  void evaluate_and_diagnose(int64_t completed, nlohmann::json& record);
  // The step's host time per phase and, when one has finished on the GPU, a recent step's device time.
  void record_phases(nlohmann::json& record);
  void show_progress(int64_t completed, const StepSignals& signals, double lr, const nlohmann::json& record);
  bool checkpoint_due(int64_t completed) const;
  TrainResult finish(int64_t step, bool preempted);

  double evaluate();
  LmLossTerms micro_batch_loss(const torch::Tensor& x, const torch::Tensor& y);
  // train.z_loss: the step's mean z term (DP-averaged) as record[z_loss]; resets the sum.
  void record_z_loss(nlohmann::json& record);
  void save_checkpoint(int64_t completed_steps);
  // restore_monitor=false on a rollback: the monitor keeps its rollback history.
  void restore_checkpoint(int64_t checkpoint_step, bool restore_monitor);
  TrainerState snapshot_state(int64_t completed_steps) const;
  void log_event(StabilityEvent event);

  RunConfig config_;
  TrainOptions options_;
  torch::Device device_;
  bool use_bf16_;
  ProgressPrinter progress_;
  parallel::SingleProcessCommunicator single_process_;
  std::unique_ptr<parallel::ProcessGroups> own_groups_;
  parallel::ProcessGroups* groups_ = nullptr;
  bool lead_ = true;  // world rank 0: writes logs, metrics, events, run files
  int64_t tokens_per_step_ = 0;  // global: every DP replica's batch

  std::unique_ptr<StabilityMonitor> monitor_;  // built in setup(), once the data is known
  std::unique_ptr<CheckpointCommitter> checkpoints_;
  std::unique_ptr<FaultInjector> faults_;
  std::unique_ptr<StepRecorder> recorder_;
  std::unique_ptr<PhaseClock> phases_;  // host and device time per phase of each step
  std::unique_ptr<StepSignalReader> signals_;
  std::unique_ptr<parallel::GradientBucketer> bucketer_;  // DP > 1
  bool bucket_in_backward_ = false;  // the hooks feed the bucketer during this backward

  Gpt model_{nullptr};
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<OptimizerSharding> sharding_;  // parallel.shard_optimizer
  std::unique_ptr<DataLoader> train_loader_;
  std::vector<std::string> val_shards_;
  std::unique_ptr<JsonLinesLog> events_;
  torch::Tensor z_loss_sum_;  // () the z terms of this step's micro-batches (train.z_loss > 0)
  LrSchedule schedule_;
  torch::Tensor probe_tokens_;  // (probe, T) fixed validation batch for the model diagnostics

  int64_t start_step_ = 0;
  int64_t tokens_seen_ = 0;
  double best_val_loss_ = std::numeric_limits<double>::quiet_NaN();
  double last_val_loss_ = std::numeric_limits<double>::quiet_NaN();
  double last_update_ratio_ = 0.0;
  int32_t eos_id_ = -1;  // the dataset's document separator (-1: unknown), for event evidence
};

}  // namespace keel
