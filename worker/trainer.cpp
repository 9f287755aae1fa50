// The single-worker training loop (see trainer.h).
//
// Step anatomy (one optimizer step = grad_accum micro-batches):
//   forward/backward per micro-batch -> loss and per-layer grad norms gathered in ONE host read
//   -> stability monitor verdict -> apply (clip, AdamW) | skip | rollback | abort | remedy restart
//   -> metrics.jsonl record -> periodic validation and checkpoint.
//
// Distributed (options.groups set, one process per rank): the batch is split over the DP group
// (DataLoader rank = dp_rank) and gradients are averaged over it (GradientBucketer; overlapped with
// backward on GPUs); the model is split over the TP group (model/gpt.h). The loss is averaged over
// DP and the per-layer squared grad norms of split tensors summed over TP, so every rank feeds the
// monitor the same global numbers; the verdict hashes are compared across the world every step and
// a disagreement stops the job. Rollbacks restore the same committed step on every rank. World
// rank 0 writes the run's logs; checkpoints are written by the DP-rank-0 member of each TP group
// into one shared folder and committed through the coordinator (train_checkpoint.h).
#include "worker/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <map>
#include <set>

#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/preemption.h"
#include "common/process.h"
#include "data/data_loader.h"
#include "data/dataset_meta.h"
#include "data/token_statistics.h"
#include "diagnostics/model_diagnostics.h"
#include "model/activation_checkpoint.h"
#include "model/gpt.h"
#include "model/torch_compat.h"
#include "optim/adamw.h"
#include "optim/lr_schedule.h"
#include "rpc/coordinator_client.h"
#include "parallel/process_groups.h"
#include "parallel/torch_adapter.h"
#include "diagnostics/spike_conditions.h"
#include "stability/stability_monitor.h"
#include "device/device_memory.h"
#include "device/select_device.h"
#include "metrics/jsonl_log.h"
#include "worker/progress.h"
#include "checkpoint_torch/training_checkpoint.h"

namespace keel {
namespace {

using Clock = std::chrono::steady_clock;

// "10, 20, 30" (or "none").
std::string fmt_steps(const std::vector<int64_t>& steps) {
  std::string out;
  for (int64_t s : steps) out += (out.empty() ? "" : ", ") + std::to_string(s);
  return out.empty() ? "none" : out;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
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
                                 "--set", "data.val_fraction=" + std::to_string(data.val_fraction),
                                 "--set", "data.shuffle_seed=" + std::to_string(data.shuffle_seed)});
  KEEL_CHECK(code == 0 && dataset_ready(data.dir), "preparing the dataset in '" << data.dir << "' failed (exit code "
                                                                                 << code << ")");
}

// Copies a batch of int32 token ids to an int64 (B, T) tensor on `device`. On CUDA the ids travel
// through pinned memory asynchronously and are widened on the GPU, so the host never waits for the
// GPU here (a pageable copy would drain the stream first). The caching host allocator keeps each
// pinned buffer until its copy has completed, so consecutive micro-batches never overwrite one in flight.
torch::Tensor to_tensor(const std::vector<int32_t>& tokens, int64_t batch, int64_t seq, torch::Device device) {
  auto cpu = torch::from_blob(const_cast<int32_t*>(tokens.data()), {batch, seq}, torch::kInt);
  if (device.is_cpu()) return cpu.to(torch::kLong);
  auto pinned = torch::empty({batch, seq}, torch::TensorOptions().dtype(torch::kInt).pinned_memory(true));
  pinned.copy_(cpu);
  return pinned.to(device, /*non_blocking=*/true).to(torch::kLong);
}

class Trainer {
 public:
  Trainer(RunConfig config, TrainOptions options)
      : config_(std::move(config)),
        options_(std::move(options)),
        device_(select_device(config_.train.device, options_.device_index)),
        use_bf16_(device_.is_cuda() && config_.train.precision != "fp32"),
        progress_(options_.interactive) {
    if (options_.groups) {
      groups_ = options_.groups;
    } else {
      own_groups_ = std::make_unique<parallel::ProcessGroups>(single_process_, 1, 1);
      groups_ = own_groups_.get();
    }
    lead_ = groups_->world().rank() == 0;
    KEEL_CHECK(groups_->dp_size() == config_.parallel.dp && groups_->tp_size() == config_.parallel.tp,
               "the process groups are dp=" << groups_->dp_size() << " x tp=" << groups_->tp_size()
                                            << " but the config says parallel.dp=" << config_.parallel.dp
                                            << " x parallel.tp=" << config_.parallel.tp);
    const bool host_collectives = groups_->world().memory_kind() == parallel::MemoryKind::kHost;
    KEEL_CHECK(groups_->world().size() == 1 || host_collectives == device_.is_cpu(),
               "the " << groups_->world().backend() << " backend needs "
                      << (host_collectives ? "CPU" : "CUDA") << " tensors but this run trains on " << device_.str()
                      << " (use parallel.backend=nccl on GPUs, mpi on CPUs)");
    KEEL_CHECK(!(device_.is_cpu() && config_.train.precision == "bf16"),
               "train.precision=bf16 needs a CUDA device (CPU runs train in fp32)");
    config_.stability.validate();
  }

  TrainResult run();

 private:
  void setup();
  void resume_if_asked();
  void init_from_checkpoint();  // train.init_from (keel uptrain): start from another run's weights
  // The initial state again (a restart ordered by the monitor): parameters from the seed (and
  // train.init_from), AdamW moments zero, the data cursor at the start.
  void reinitialize();
  // The stability monitor, told what it needs about this run (batch, length, data, vocabulary).
  void build_monitor(const std::vector<std::string>& train_shards);
  // Where this step's data came from, for the monitor (before: the cursor before the step).
  DataPosition data_position(const DataCursor& before, int64_t tokens) const;
  // Adds the document index and shard name to an event's data position (a shard scan).
  void describe_data(DataPosition& data) const;
  // Moves checkpoints newer than `step` into `folder` under the run directory, kept but never
  // resumed from: --resume-from an older step, and a rollback's abandoned timeline (whose
  // checkpoints a later --resume or keep-last-K retention would otherwise take for current).
  void set_aside_checkpoints_after(int64_t step, const std::string& folder, const std::string& why);
  // After a rollback to `target` at `at_step`: the newer checkpoints belong to the abandoned
  // timeline; they go to checkpoints-abandoned/rollback-K-at-step-S/ and are forgotten.
  void abandon_checkpoints_after(int64_t target, int64_t at_step);
  bool injection_fires(const std::string& name, int64_t at_step, int64_t step);
  double evaluate();
  void save_checkpoint(int64_t completed_steps);
  // restore_monitor=false on a rollback: the monitor keeps its rollback history.
  void restore_checkpoint(int64_t checkpoint_step, bool restore_monitor);
  void log_event(StabilityEvent event);
  // clip_norm > 0: an absolute limit on the global norm besides train.grad_clip x clip_scale.
  double clip_and_step(double grad_norm, double clip_scale, double clip_norm, double lr);
  // (G) float: per layer group, the squared grad norms summed over the whole model (global over TP).
  torch::Tensor layer_grad_squares();
  // The training loss of one micro-batch (activation checkpointing when configured).
  torch::Tensor micro_batch_loss(const torch::Tensor& x, const torch::Tensor& y);
  TrainerState snapshot_state(int64_t completed_steps) const;
  CheckpointRole checkpoint_role() const;
  // Throws (stopping the job) unless every rank of the world passed the same value.
  void check_agreement(uint64_t value, const std::string& what);
  // True when any rank got a preemption signal (common/preemption.h); every rank gets the same
  // answer for the same step (one tiny collective when the world has more than one rank).
  bool preemption_agreed();
  // Squared norms summed over the whole model: split tensors' squares are summed over TP.
  // sharded/replicated: (G) float tensors of the per-group sums on this rank -> (G) global sums.
  torch::Tensor global_squares(torch::Tensor sharded, const torch::Tensor& replicated);
  void report_to_coordinator(const nlohmann::json& record);
  void forget_pruned_checkpoints();

  RunConfig config_;
  TrainOptions options_;
  torch::Device device_;
  bool use_bf16_;
  std::unique_ptr<StabilityMonitor> monitor_;  // built in setup(), once the data is known
  ProgressPrinter progress_;
  parallel::SingleProcessCommunicator single_process_;
  std::unique_ptr<parallel::ProcessGroups> own_groups_;
  parallel::ProcessGroups* groups_ = nullptr;
  bool lead_ = true;  // world rank 0: writes logs, metrics, events, run files
  std::unique_ptr<parallel::GradientBucketer> bucketer_;  // DP > 1
  bool bucket_in_backward_ = false;  // the hooks feed the bucketer during this backward
  std::set<int64_t> saved_steps_;    // committed checkpoints the monitor knows of

  Gpt model_{nullptr};
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<DataLoader> train_loader_;
  std::vector<std::string> val_shards_;
  std::unique_ptr<checkpoint::CheckpointStore> store_;
  std::unique_ptr<JsonLinesLog> metrics_;
  std::unique_ptr<JsonLinesLog> events_;
  LrSchedule schedule_;
  std::vector<std::string> layer_names_;
  std::vector<std::vector<torch::Tensor>> layer_sharded_params_;     // split over TP
  std::vector<std::vector<torch::Tensor>> layer_replicated_params_;  // identical on every TP rank
  std::vector<bool> param_sharded_;  // by optimizer parameter index
  std::vector<torch::Tensor> update_snapshot_;
  // CUDA: multi-tensor (foreach) reductions instead of a few kernels per parameter. Per parameter:
  // its layer group (grad norms) and 1 if split over TP (update ratio), on the device.
  bool foreach_reductions_ = false;
  torch::Tensor param_groups_;        // (G, P) float: 1 where parameter p is in layer group g
  torch::Tensor param_sharded_mask_;  // (P) float
  torch::Tensor probe_tokens_;  // (probe, T) fixed validation batch for the model diagnostics  // parameters before the update, for the update ratio

  int64_t start_step_ = 0;
  int64_t tokens_seen_ = 0;
  int64_t last_saved_step_ = -1;
  double best_val_loss_ = std::numeric_limits<double>::quiet_NaN();
  double last_val_loss_ = std::numeric_limits<double>::quiet_NaN();
  std::set<std::string> injections_done_;  // fault injections fire once per run, also across rollbacks
  double last_update_ratio_ = 0.0;
  int32_t eos_id_ = -1;  // the dataset's document separator (-1: unknown), for event evidence
};

void Trainer::setup() {
  auto& world = groups_->world();
  fs::make_dirs(options_.run_dir);
  const std::string checkpoint_root = options_.run_dir + "/checkpoints";
  store_ = std::make_unique<checkpoint::CheckpointStore>(checkpoint_root);
  if (!options_.resume) {
    KEEL_CHECK(store_->list_steps().empty(), "run directory '" << options_.run_dir
                                                               << "' already has checkpoints: pass --resume to "
                                                                  "continue it, or choose another --run-dir");
  }
  world.barrier();  // every rank looked before rank 0 changes anything
  if (lead_) {
    store_->remove_stale_temporaries();
    if (!options_.resume) {
      for (const char* name : {"/metrics.jsonl", "/events.jsonl"}) {
        if (fs::exists(options_.run_dir + name)) fs::remove_all(options_.run_dir + name);
      }
    }
    fs::write_file_atomic(options_.run_dir + "/config.yaml", config_.to_yaml());
    if (config_.debug.any_enabled()) log::warn("FAULT INJECTION ON: " + config_.debug.describe());
    ensure_dataset(config_.data);
  }
  world.barrier();

  if (config_.train.threads > 0) torch::set_num_threads(static_cast<int>(config_.train.threads));
  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  if (device_.is_cuda()) torch::cuda::manual_seed_all(static_cast<uint64_t>(config_.train.seed));

  const int64_t T = config_.seq_len();
  train_loader_ = std::make_unique<DataLoader>(glob_shards(config_.data.dir, config_.data.train_pattern),
                                               config_.train.batch_size, T, groups_->dp_rank(), groups_->dp_size());
  train_loader_->check_vocab(config_.model.vocab_size);
  val_shards_ = glob_shards(config_.data.dir, config_.data.val_pattern);
  build_monitor(glob_shards(config_.data.dir, config_.data.train_pattern));

  model_ = Gpt(config_.model, &groups_->tp());
  model_->set_fused_cross_entropy(config_.train.fused_cross_entropy);
  model_->to(device_);
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  std::vector<bool> decay;
  std::set<const void*> sharded;
  for (const auto& item : model_->named_parameters()) {
    names.push_back(item.key());
    params.push_back(item.value());
    decay.push_back(model_->decays(item.key()));
    param_sharded_.push_back(groups_->tp_size() > 1 && shard_kind(item.key()) != ShardKind::kReplicated);
    if (param_sharded_.back()) sharded.insert(item.value().unsafeGetTensorImpl());
  }
  AdamWOptions adam;
  adam.beta1 = config_.train.beta1;
  adam.beta2 = config_.train.beta2;
  adam.eps = config_.train.eps;
  adam.weight_decay = config_.train.weight_decay;
  optimizer_ = std::make_unique<AdamW>(names, params, decay, adam);
  for (auto& [name, group] : model_->layer_groups()) {
    layer_names_.push_back(name);
    layer_sharded_params_.emplace_back();
    layer_replicated_params_.emplace_back();
    for (const auto& p : group)
      (sharded.count(p.unsafeGetTensorImpl()) ? layer_sharded_params_ : layer_replicated_params_).back().push_back(p);
  }
  // CUDA: grad norms and the update ratio by multi-tensor kernels (CPU keeps the per-tensor
  // reductions, bit for bit). Each parameter's layer group and TP split, as device tensors.
  foreach_reductions_ = device_.is_cuda();
  if (foreach_reductions_) {
    std::map<const void*, int64_t> group_of;
    for (size_t g = 0; g < layer_names_.size(); ++g) {
      for (const auto* list : {&layer_sharded_params_[g], &layer_replicated_params_[g]})
        for (const auto& p : *list) group_of[p.unsafeGetTensorImpl()] = static_cast<int64_t>(g);
    }
    const auto P = static_cast<int64_t>(params.size());
    auto membership = torch::zeros({static_cast<int64_t>(layer_names_.size()), P}, torch::kFloat);
    auto mask = torch::zeros({P}, torch::kFloat);
    for (int64_t i = 0; i < P; ++i) {
      auto it = group_of.find(params[static_cast<size_t>(i)].unsafeGetTensorImpl());
      KEEL_CHECK(it != group_of.end(), "parameter " << names[static_cast<size_t>(i)] << " is in no layer group");
      membership[it->second][i] = 1.0f;
      if (param_sharded_[static_cast<size_t>(i)]) mask[i] = 1.0f;
    }
    param_groups_ = membership.to(device_);
    param_sharded_mask_ = mask.to(device_);
  }
  if (groups_->dp_size() > 1) {
    bucketer_ = std::make_unique<parallel::GradientBucketer>(groups_->dp(), params, config_.parallel.bucket_mb);
    if (device_.is_cuda()) {
      // Overlap: each gradient goes to its bucket the moment backward produces it (the hook sees
      // it before it is accumulated into .grad, hence the sum with earlier micro-batches).
      for (size_t i = 0; i < params.size(); ++i) {
        torch::Tensor p = params[i];
        p.register_hook([this, i, p](torch::Tensor grad) {
          if (bucket_in_backward_) bucketer_->on_grad_ready(i, p.grad().defined() ? p.grad() + grad : grad);
          return torch::Tensor();
        });
      }
    }
  }
  schedule_ = LrSchedule{config_.train.lr, config_.train.warmup_steps, config_.train.steps, config_.train.min_lr_ratio};

  if (lead_)
    log::info(strprintf("model: %lld parameters (%lld non-embedding), %lld layers, d=%lld, heads=%lld, recipe '%s', "
                      "device %s%s",
                      static_cast<long long>(model_->num_parameters()),
                      static_cast<long long>(model_->num_non_embedding_parameters()),
                      static_cast<long long>(config_.model.num_layers), static_cast<long long>(config_.model.d_model),
                      static_cast<long long>(config_.model.num_heads), config_.run.recipe.c_str(),
                      device_.str().c_str(), use_bf16_ ? " (bf16 autocast)" : ""));
  if (lead_ && world.size() > 1)
    log::info(strprintf("parallel: world %d = dp %d x tp %d, %s collectives", world.size(), groups_->dp_size(),
                        groups_->tp_size(), world.backend().c_str()));

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
    if (lead_) {
      for (const auto& line : report.lines()) log::info("spike-no-more: " + line);
      if (report.warn) log::warn("spike-no-more: " + report.warning);
      fs::write_file_atomic(options_.run_dir + "/spike_conditions.json", report.to_json().dump(2) + "\n");
    }
  }

  if (lead_) {
    metrics_ = std::make_unique<JsonLinesLog>(options_.run_dir + "/metrics.jsonl");
    events_ = std::make_unique<JsonLinesLog>(options_.run_dir + "/events.jsonl");
  }
}

void Trainer::build_monitor(const std::vector<std::string>& train_shards) {
  RunFacts facts;
  facts.tokens_per_step = config_.train.batch_size * config_.seq_len() * config_.train.grad_accum * groups_->dp_size();
  facts.total_steps = config_.train.steps;
  facts.vocab_size = config_.model.vocab_size;
  facts.peak_lr = config_.train.lr;
  facts.lr_warmup_steps = config_.train.warmup_steps;
  // The flat-loss check compares with the data's unigram entropy (meta.json, or a pass over the
  // shards); without it that check is off, nothing else.
  try {
    facts.unigram_entropy = dataset_unigram_entropy(config_.data.dir, train_shards);
  } catch (const DataError& e) {
    if (lead_) log::warn(std::string("stability: no unigram entropy for the flat-loss check: ") + e.what());
  }
  monitor_ = std::make_unique<StabilityMonitor>(config_.stability, facts);
  eos_id_ = dataset_eos_id(config_.data.dir);
  if (lead_ && config_.stability.enabled)
    log::info(strprintf("stability: mode %s; training data unigram entropy %.4f nats (the loss must fall below it "
                        "after %lld steps)",
                        config_.stability.mode.c_str(), facts.unigram_entropy,
                        static_cast<long long>(monitor_->progress_detector().flat_after_steps())));
}

DataPosition Trainer::data_position(const DataCursor& before, int64_t tokens) const {
  const DataCursor after = train_loader_->cursor();
  DataPosition p;
  p.epoch = before.epoch;
  p.shard = before.shard_index;
  p.offset = before.position;
  p.next_epoch = after.epoch;
  p.next_shard = after.shard_index;
  p.next_offset = after.position;
  p.tokens = tokens;
  p.crossed_epoch = after.epoch != before.epoch;
  p.crossed_shard = after.shard_index != before.shard_index || p.crossed_epoch;
  return p;
}

void Trainer::describe_data(DataPosition& data) const {
  if (!data.known() || data.shard >= train_loader_->num_shards()) return;
  const TokenShard& shard = train_loader_->shard(data.shard);
  data.shard_name = std::filesystem::path(shard.path()).filename().string();
  if (eos_id_ < 0) return;
  const int64_t length = std::min(data.tokens, shard.num_tokens() - data.offset);
  if (length <= 0) return;
  const DocumentSpan span = document_span(shard, data.offset, length, eos_id_);
  data.document = span.first_document;
  data.documents = span.boundaries;
}

void Trainer::reinitialize() {
  torch::NoGradGuard no_grad;
  // The same seed as the first start: the same initial weights on every rank.
  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  if (device_.is_cuda()) torch::cuda::manual_seed_all(static_cast<uint64_t>(config_.train.seed));
  Gpt fresh(config_.model, &groups_->tp());
  auto fresh_params = fresh->named_parameters();
  for (auto& item : model_->named_parameters()) item.value().copy_(fresh_params[item.key()]);
  optimizer_->reset();
  if (!config_.train.init_from.empty())
    init_model_from_checkpoint(config_.train.init_from, model_, checkpoint_role());
  start_step_ = 0;
  tokens_seen_ = 0;
  train_loader_->set_cursor(DataCursor{});
  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  if (lead_) log::info("stability: model and optimizer rebuilt from the seed (the initial state)");
}

void Trainer::set_aside_checkpoints_after(int64_t step, const std::string& folder, const std::string& why) {
  if (!lead_) return;
  const std::string aside = options_.run_dir + "/" + folder;
  for (int64_t later : store_->list_steps()) {
    if (later <= step) continue;
    fs::make_dirs(aside);
    const std::string to = aside + "/" + checkpoint::CheckpointStore::dir_name(later);
    KEEL_CHECK(!fs::exists(to), "cannot set checkpoint " << store_->path_of(later) << " aside: " << to
                                                         << " exists already (move it away first)");
    fs::rename_durable(store_->path_of(later), to);
    log::warn(why + ": newer checkpoint moved to " + to + " (kept, not used)");
  }
}

void Trainer::abandon_checkpoints_after(int64_t target, int64_t at_step) {
  // One folder per rollback (a later timeline may save the same steps again).
  int attempt = 1;
  std::string folder;
  do {
    folder = "checkpoints-abandoned/rollback-" + std::to_string(attempt++) + "-at-step-" + std::to_string(at_step);
  } while (lead_ && fs::exists(options_.run_dir + "/" + folder));
  set_aside_checkpoints_after(target, folder, "rollback to step " + std::to_string(target));
  saved_steps_.erase(saved_steps_.upper_bound(target), saved_steps_.end());
  last_saved_step_ = std::min(last_saved_step_, target);
}

CheckpointRole Trainer::checkpoint_role() const {
  CheckpointRole role;
  role.tp_rank = groups_->tp_rank();
  role.tp_size = groups_->tp_size();
  role.dp_size = groups_->dp_size();
  role.writes_shard = groups_->dp_rank() == 0;
  role.writes_common = lead_;
  return role;
}

void Trainer::check_agreement(uint64_t value, const std::string& what) {
  auto& world = groups_->world();
  if (world.size() == 1) return;
  const int64_t v = static_cast<int64_t>(value & 0x3fffffffffffffffULL);  // -v must not overflow
  auto both = torch::tensor({v, -v}, torch::kLong).to(device_);
  parallel::all_reduce(world, both, parallel::ReduceOp::kMax);
  auto host = both.to(torch::kCPU);
  const int64_t highest = host[0].item<int64_t>(), lowest = -host[1].item<int64_t>();
  KEEL_CHECK(highest == v && lowest == v, "ranks disagree on " << what << " (rank " << world.rank() << " has " << v
                                                               << ", the world ranges " << lowest << ".." << highest
                                                               << "): stopping the job");
}

bool Trainer::preemption_agreed() {
  auto& world = groups_->world();
  int64_t flag = preemption::requested() ? 1 : 0;
  if (world.size() > 1) {
    auto any = torch::tensor({flag}, torch::kLong).to(device_);
    parallel::all_reduce(world, any, parallel::ReduceOp::kMax);
    flag = any.to(torch::kCPU).item<int64_t>();
  }
  return flag != 0;
}

torch::Tensor Trainer::global_squares(torch::Tensor sharded, const torch::Tensor& replicated) {
  if (groups_->tp_size() > 1) parallel::all_reduce(groups_->tp(), sharded, parallel::ReduceOp::kSum);
  return sharded + replicated;
}

void Trainer::report_to_coordinator(const nlohmann::json& record) {
  if (!options_.coordinator) return;
  std::map<std::string, double> values;
  for (const auto& [key, value] : record.items()) {
    if (key == "step" || key == "events") continue;
    if (value.is_number()) {
      values[key == "step_time" ? "step_time_seconds" : key == "gpu_memory_peak_bytes" ? "gpu_memory_bytes" : key] =
          value.get<double>();
    } else if (value.is_boolean()) {
      values[key] = value.get<bool>() ? 1.0 : 0.0;
    } else if (key == "layer_grad_norms") {
      for (const auto& [layer, norm] : value.items()) values["layer_grad_norm." + layer] = norm.get<double>();
    }
  }
  if (!values.count("skipped")) values["skipped"] = 0.0;
  const int64_t step = record.value("step", int64_t{0});
  options_.coordinator->set_step(step);
  options_.coordinator->report_metrics_async(step, std::move(values));
}

void Trainer::forget_pruned_checkpoints() {
  const auto present = store_->list_steps();
  for (auto it = saved_steps_.begin(); it != saved_steps_.end();) {
    if (std::find(present.begin(), present.end(), *it) == present.end()) {
      monitor_->on_checkpoint_deleted(*it);
      it = saved_steps_.erase(it);
    } else {
      ++it;
    }
  }
}

void Trainer::init_from_checkpoint() {
  const std::string& from = config_.train.init_from;
  if (from.empty() || start_step_ > 0) return;  // a resumed run continues from its own checkpoints
  const std::vector<std::string> fresh = init_model_from_checkpoint(from, model_, checkpoint_role());
  const double val_loss = evaluate();  // the starting point that uptraining improves on
  if (!lead_) return;
  log::info(strprintf("initialised from %s (%zu parameters it lacks keep their fresh init); val loss at step 0: %.4f",
                      from.c_str(), fresh.size(), val_loss));
  const nlohmann::json info = {{"checkpoint", from}, {"fresh_parameters", fresh}, {"val_loss", val_loss}};
  fs::write_file_atomic(options_.run_dir + "/init_from.json", info.dump(2) + "\n");
}

void Trainer::resume_if_asked() {
  if (!options_.resume) return;
  std::vector<std::string> rejected;
  std::optional<int64_t> latest;
  if (options_.resume_from_step >= 0) {
    // --resume-from STEP: exactly that checkpoint (complete and verified), newer ones set aside.
    const auto verified = store_->verify(options_.resume_from_step);
    KEEL_CHECK(verified.ok, "--resume-from " << options_.resume_from_step << ": no complete checkpoint "
                                             << store_->path_of(options_.resume_from_step) << " (" << verified.problem
                                             << "); checkpoints present: " << fmt_steps(store_->list_steps()));
    latest = options_.resume_from_step;
    check_agreement(static_cast<uint64_t>(*latest + 1), "the checkpoint to resume from");
    set_aside_checkpoints_after(*latest, "checkpoints-set-aside", "--resume-from " + std::to_string(*latest));
    groups_->world().barrier();
  } else {
    latest = store_->latest_valid(&rejected);
  }
  for (const auto& why : rejected) {
    if (lead_) log::warn("resume: skipping damaged checkpoint: " + why);
  }
  if (options_.resume_from_step < 0) check_agreement(static_cast<uint64_t>(latest ? *latest + 1 : 0), "the checkpoint to resume from");
  if (!latest) {
    if (lead_) log::warn("--resume: no complete checkpoint in '" + options_.run_dir + "/checkpoints'; starting from step 0");
    return;
  }
  restore_checkpoint(*latest, /*restore_monitor=*/true);
  for (int64_t step : store_->list_steps()) {
    if (step <= *latest) saved_steps_.insert(step);
  }
  // The saved monitor state predates the retention that followed its checkpoint: the checkpoints
  // it knows of join the ledger and the usual reconciliation forgets the pruned ones (the initial
  // state is rebuilt from the seed, never a directory).
  for (int64_t step : monitor_->tracker().checkpoints()) {
    if (step > 0) saved_steps_.insert(step);
  }
  forget_pruned_checkpoints();
  if (!lead_) return;
  metrics_->truncate_from_step(start_step_);
  events_->truncate_from_step(start_step_);
  log::info("resumed from " + store_->path_of(*latest) + " at step " + std::to_string(start_step_));
}

void Trainer::restore_checkpoint(int64_t checkpoint_step, bool restore_monitor) {
  auto state = load_training_checkpoint(store_->path_of(checkpoint_step), model_, *optimizer_, checkpoint_role());
  start_step_ = state.step;
  tokens_seen_ = state.tokens_seen;
  train_loader_->set_cursor(DataCursor::from_json(state.data_cursor));
  if (restore_monitor && !state.monitor.is_null()) {
    monitor_->state_from_json(state.monitor);
    // The saved monitor state predates its own on_checkpoint_saved(C) call (see stability_monitor.h).
    monitor_->on_checkpoint_saved(checkpoint_step);
    // The first step after C is judged with the ratio of update C-1, as in the uninterrupted run.
    if (state.extra.contains("last_update_ratio") && state.extra["last_update_ratio"].is_number())
      last_update_ratio_ = state.extra["last_update_ratio"].get<double>();
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
  state.monitor = monitor_->state_to_json();
  state.extra["best_val_loss"] = std::isnan(best_val_loss_) ? nlohmann::json() : nlohmann::json(best_val_loss_);
  state.extra["injections_done"] = injections_done_;
  state.extra["last_update_ratio"] = last_update_ratio_;
  state.extra["recipe"] = config_.run.recipe;
  return state;
}

void Trainer::save_checkpoint(int64_t completed_steps) {
  if (last_saved_step_ == completed_steps) return;
  const auto start = Clock::now();
  auto& world = groups_->world();
  const TrainerState state = snapshot_state(completed_steps);
  std::string dir;
  ShardWriteReport written;
  if (world.size() == 1) {
    dir = save_training_checkpoint(*store_, model_, *optimizer_, state, config_.to_yaml(), &written);
    if (options_.coordinator)  // the coordinator's record of committed steps (a world of one: one writer)
      options_.coordinator->commit_shard(completed_steps, written.shard_name, written.bytes, written.crc32);
    monitor_->on_checkpoint_saved(completed_steps);
    store_->prune(config_.checkpoint.keep, monitor_->protected_checkpoints());
  } else {
    // Phase one: every shard writer writes its files into the shared folder. Phase two: each reports
    // its shard to the coordinator, which commits the step once all TP shards are in; only then
    // does rank 0 seal the folder (manifest, rename). Without a coordinator the barrier is the commit.
    auto pending = store_->begin_shared(completed_steps, "job");
    const CheckpointRole role = checkpoint_role();
    if (role.writes_shard || role.writes_common)
      written = write_checkpoint_files(pending.dir(), model_, *optimizer_, state, config_.to_yaml(), role);
    bool committed = true;
    if (options_.coordinator && role.writes_shard)
      committed = options_.coordinator->commit_shard(completed_steps, written.shard_name, written.bytes,
                                                     written.crc32, /*wait_seconds=*/lead_ ? 600.0 : 0.0);
    monitor_->on_checkpoint_saved(completed_steps);
    world.barrier();
    if (lead_) {
      KEEL_CHECK(committed, "the coordinator did not commit checkpoint step " << completed_steps
                                                                              << " (a shard writer is missing)");
      dir = store_->commit(std::move(pending), {{"tokens_seen", state.tokens_seen}});
      store_->prune(config_.checkpoint.keep, monitor_->protected_checkpoints());
    } else {
      pending.release();
    }
    world.barrier();  // the checkpoint is final (and pruned) before any rank moves on
  }
  last_saved_step_ = completed_steps;
  saved_steps_.insert(completed_steps);
  forget_pruned_checkpoints();
  const double seconds = seconds_since(start);
  if (options_.coordinator && written.bytes > 0)
    options_.coordinator->report_metrics_async(completed_steps, {{"checkpoint_save_seconds", seconds},
                                                                 {"checkpoint_bytes", static_cast<double>(written.bytes)}});
  if (lead_) log::info(strprintf("checkpoint %s saved in %.2fs", store_->path_of(completed_steps).c_str(), seconds));
}

bool Trainer::injection_fires(const std::string& name, int64_t at_step, int64_t step) {
  if (at_step < 0 || step != at_step || injections_done_.count(name)) return false;
  injections_done_.insert(name);
  if (lead_) log::warn("FAULT INJECTION: " + name + " at step " + std::to_string(step));
  return true;
}

double Trainer::evaluate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  DataLoader val_loader(val_shards_, config_.train.batch_size, config_.seq_len(), groups_->dp_rank(),
                        groups_->dp_size());
  torch::Tensor total = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
  for (int64_t i = 0; i < config_.train.eval_batches; ++i) {
    auto batch = val_loader.next();
    auto x = to_tensor(batch.inputs, batch.batch_size, batch.seq_len, device_);
    auto y = to_tensor(batch.targets, batch.batch_size, batch.seq_len, device_);
    compat::CudaBf16Autocast autocast(use_bf16_);
    total += model_->loss(x, y).detach().to(torch::kFloat);
  }
  model_->train();
  if (groups_->dp_size() > 1) parallel::all_reduce(groups_->dp(), total, parallel::ReduceOp::kAvg);
  return total.item<double>() / static_cast<double>(config_.train.eval_batches);
}

torch::Tensor Trainer::layer_grad_squares() {
  const auto float_options = torch::TensorOptions().dtype(torch::kFloat).device(device_);
  if (foreach_reductions_) {
    // One multi-tensor norm over every gradient, then a per-group sum (a handful of kernels).
    std::vector<torch::Tensor> grads;
    for (const auto& p : optimizer_->params()) grads.push_back(p.grad().defined() ? p.grad() : torch::Tensor());
    bool all_defined = true;
    for (const auto& g : grads) all_defined = all_defined && g.defined();
    if (all_defined) {
      auto squares = torch::stack(at::_foreach_norm(grads)).to(torch::kFloat).pow(2);  // (P)
      // (G, P) x (P): deterministic, unlike an atomic index_add_.
      return global_squares(param_groups_.mv(squares * param_sharded_mask_),
                            param_groups_.mv(squares * (1 - param_sharded_mask_)));
    }
  }
  auto squares_of = [&](const std::vector<std::vector<torch::Tensor>>& groups) {
    std::vector<torch::Tensor> per_group;
    for (const auto& group : groups) {
      std::vector<torch::Tensor> squares;
      for (const auto& p : group) {
        if (p.grad().defined()) squares.push_back(p.grad().to(torch::kFloat).pow(2).sum());
      }
      per_group.push_back(squares.empty() ? torch::zeros({}, float_options) : torch::stack(squares).sum());
    }
    return torch::stack(per_group);
  };
  return global_squares(squares_of(layer_sharded_params_), squares_of(layer_replicated_params_));
}

torch::Tensor Trainer::micro_batch_loss(const torch::Tensor& x, const torch::Tensor& y) {
  if (config_.train.activation_checkpointing) return activation_checkpointed_loss(*model_, x, y);
  return model_->loss(x, y);
}

double Trainer::clip_and_step(double grad_norm, double clip_scale, double clip_norm, double lr) {
  torch::NoGradGuard no_grad;
  double clip = config_.train.grad_clip * clip_scale;
  if (clip_norm > 0) clip = clip > 0 ? std::min(clip, clip_norm) : clip_norm;
  const auto& params = optimizer_->params();
  if (clip > 0 && grad_norm > clip) {
    const double factor = clip / (grad_norm + 1e-6);
    std::vector<torch::Tensor> grads;
    for (const auto& p : params) {
      if (p.grad().defined()) grads.push_back(p.grad());
    }
    if (!grads.empty()) at::_foreach_mul_(grads, factor);  // one multi-tensor kernel on CUDA; per tensor on CPU
  }
  // Update-to-weight ratio ||W_after - W_before|| / ||W_before||, over all parameters.
  if (update_snapshot_.empty()) {
    for (const auto& p : params) update_snapshot_.push_back(torch::empty_like(p));
  }
  torch::Tensor sums;  // (2): delta^2, weight^2 summed over the whole model
  if (foreach_reductions_) {
    compat::foreach_copy_(update_snapshot_, params);
    auto weight_sq = torch::stack(at::_foreach_norm(update_snapshot_)).to(torch::kFloat).pow(2);  // (P)
    optimizer_->step(lr);
    at::_foreach_sub_(update_snapshot_, params);
    auto delta_sq = torch::stack(at::_foreach_norm(update_snapshot_)).to(torch::kFloat).pow(2);  // (P)
    auto both = torch::stack({delta_sq, weight_sq});                                            // (2, P)
    sums = global_squares((both * param_sharded_mask_).sum(1), (both * (1 - param_sharded_mask_)).sum(1))
               .to(torch::kCPU, torch::kDouble);
  } else {
    for (size_t i = 0; i < params.size(); ++i) update_snapshot_[i].copy_(params[i]);
    optimizer_->step(lr);
    // (delta^2, weight^2) of split and of replicated tensors, summed over the whole model.
    auto zero = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
    torch::Tensor sums_sharded[2] = {zero, zero}, sums_replicated[2] = {zero, zero};
    for (size_t i = 0; i < params.size(); ++i) {
      torch::Tensor* part = param_sharded_[i] ? sums_sharded : sums_replicated;
      part[1] = part[1] + update_snapshot_[i].pow(2).sum().to(torch::kFloat);
      part[0] = part[0] + update_snapshot_[i].sub_(params[i]).pow(2).sum().to(torch::kFloat);
    }
    sums = global_squares(torch::stack({sums_sharded[0], sums_sharded[1]}),
                          torch::stack({sums_replicated[0], sums_replicated[1]}))
               .to(torch::kCPU, torch::kDouble);
  }
  const double denominator = std::sqrt(sums[1].item<double>());
  return denominator > 0 ? std::sqrt(sums[0].item<double>()) / denominator : 0.0;
}

void Trainer::log_event(StabilityEvent event) {
  if (!lead_) return;
  describe_data(event.data);
  auto record = event.to_json();
  events_->append(record);
  if (options_.coordinator)
    options_.coordinator->report_event_async(event.kind, event.step, record.dump(), event.action);
  const std::string text = "stability: " + event.kind + " at step " + std::to_string(event.step) + " -> " +
                           event.action + " (" + event.reason + "; data: " + event.data.describe() + ")";
  log::warn(text);
}

TrainResult Trainer::run() {
  setup();
  resume_if_asked();
  init_from_checkpoint();
  // A fresh run can always rebuild its initial state from the seed: a rollback target before the
  // first checkpoint (a resumed run carries this in the monitor's saved state).
  if (start_step_ == 0) monitor_->on_initial_state();
  TrainResult result;
  const int64_t B = config_.train.batch_size, T = config_.seq_len(), accum = config_.train.grad_accum;
  const int64_t tokens_per_step = B * T * accum * groups_->dp_size();  // global: every DP replica's batch
  // Model FLOPs per token (PaLM appendix B: 6N + 12 L d T) against the peak of every device.
  const double flops_per_token = 6.0 * static_cast<double>(model_->num_non_embedding_parameters()) +
                                 12.0 * static_cast<double>(config_.model.num_layers * config_.model.d_model * T);
  const double device_peak = config_.train.peak_flops > 0 ? config_.train.peak_flops
                             : device_.is_cuda()          ? cuda_peak_bf16_flops(device_.index())
                                                          : 0.0;
  const double job_peak = device_peak * static_cast<double>(groups_->world().size());
  const int64_t total = config_.train.steps;
  const auto& debug = config_.debug;
  double step_time_ema = 0;
  double timed_seconds = 0;
  int64_t timed_tokens = 0;
  model_->train();

  int64_t step = start_step_;
  while (step < total) {
    if (config_.train.stop_at > 0 && step >= config_.train.stop_at) break;
    if (options_.coordinator && options_.coordinator->job_failed())
      throw KeelError("the job failed: " + options_.coordinator->failure_message());
    const auto step_start = Clock::now();
    optimizer_->zero_grad();
    const DataCursor data_before = train_loader_->cursor();
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
        loss = micro_batch_loss(x, y);
      }
      bucket_in_backward_ = bucketer_ && device_.is_cuda() && micro == accum - 1;
      (loss / static_cast<double>(accum)).backward();
      bucket_in_backward_ = false;
      loss_sum += loss.detach().to(torch::kFloat);
    }
    // Gradients averaged over the DP group (on GPUs most buckets are already in flight).
    if (bucketer_) bucketer_->finish();
    if (groups_->dp_size() > 1) parallel::all_reduce(groups_->dp(), loss_sum, parallel::ReduceOp::kAvg);
    if (injection_fires("nan_grad", debug.inject_nan_grad_at, step)) {
      torch::NoGradGuard no_grad;
      optimizer_->params()[0].mutable_grad().fill_(std::numeric_limits<float>::quiet_NaN());
    }

    // One host read for the loss and every per-layer grad norm (global: split tensors summed over TP).
    // It is the step's only wait for the GPU before the update: the monitor's verdict decides
    // whether and how the update is applied, so it must see this step's values first.
    auto layer_squares = layer_grad_squares();
    auto host = torch::cat({(loss_sum / static_cast<double>(accum)).reshape({1}), layer_squares})
                    .to(torch::kCPU, torch::kDouble);
    const double* values = host.data_ptr<double>();
    StepSignals signals;
    signals.step = step;
    signals.loss = values[0];
    double grad_sq = 0;
    for (size_t i = 0; i < layer_names_.size(); ++i) {
      grad_sq += values[i + 1];
      signals.layer_grad_norms.push_back(std::sqrt(values[i + 1]));
    }
    signals.grad_norm = std::sqrt(grad_sq);
    signals.grads_finite = std::isfinite(signals.grad_norm);
    signals.update_ratio = last_update_ratio_;
    signals.data = data_position(data_before, tokens_per_step);

    // The monitor always judges (disabled, it only keeps a non-finite update off the weights).
    MonitorDecision decision = monitor_->observe(signals);
    for (auto event : decision.events) log_event(event);
    // Every rank must act alike: compare the verdicts (one tiny collective).
    if (groups_->world().size() > 1) check_agreement(monitor_->verdict_hash(step), "the stability verdict of step " + std::to_string(step));

    double lr = schedule_.at(step) * monitor_->lr_multiplier(step);
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
    if (!decision.baseline_shift.empty()) {
      record["baseline_shift"] = true;
      if (lead_) log::info("stability: step " + std::to_string(step) + ": " + decision.baseline_shift);
    }
    if (decision.action == Action::kApply) {
      last_update_ratio_ = clip_and_step(signals.grad_norm, decision.clip_scale * monitor_->cooldown_clip_scale(step),
                                         decision.clip_norm, lr);
      record["update_ratio"] = last_update_ratio_;
    } else if (decision.action == Action::kSkipUpdate) {
      record["skipped"] = true;
    } else if (decision.action == Action::kRollback) {
      // Back to the last good checkpoint before the onset (or the initial state); the data
      // continues after what this timeline consumed up to the onset.
      injections_done_.insert("lr_spike_done");
      const std::set<std::string> fired = injections_done_;
      const int64_t tokens_before = tokens_seen_ + tokens_per_step;  // this step's batch was read too
      if (decision.restart_from_initial)
        reinitialize();
      else
        restore_checkpoint(decision.rollback_to_step, /*restore_monitor=*/false);
      injections_done_.insert(fired.begin(), fired.end());
      const DataCursor restored_cursor = train_loader_->cursor();
      if (decision.resume_data.known()) {
        train_loader_->set_cursor({decision.resume_data.shard, decision.resume_data.offset, decision.resume_data.epoch});
      } else {
        train_loader_->skip_batches(decision.skip_batches * accum);
      }
      monitor_->on_rollback_done(decision.rollback_to_step, step);
      last_update_ratio_ = 0.0;  // the last update belonged to the abandoned timeline
      abandon_checkpoints_after(decision.rollback_to_step, step);
      record["rollback_to"] = decision.rollback_to_step;
      record["rolled_back_tokens"] = tokens_before - tokens_seen_;
      if (lead_) {
        metrics_->append(record);
        const DataCursor resumed = train_loader_->cursor();
        log::warn(strprintf("stability: %s; skipped data: epoch %lld shard %lld offset %lld -> epoch %lld shard %lld offset %lld; "
                            "%lld trained tokens discarded",
                            decision.summary.c_str(), static_cast<long long>(restored_cursor.epoch),
                            static_cast<long long>(restored_cursor.shard_index), static_cast<long long>(restored_cursor.position),
                            static_cast<long long>(resumed.epoch), static_cast<long long>(resumed.shard_index),
                            static_cast<long long>(resumed.position), static_cast<long long>(tokens_before - tokens_seen_)));
      }
      step = start_step_;
      continue;
    } else {
      // kAbort or kRemedyRestart: this run ends here; the launcher exits 3 or starts the child run.
      if (lead_) metrics_->append(record);
      if (lead_) progress_.finish();
      result.remedy_restart_requested = decision.action == Action::kRemedyRestart;
      result.lr_scale = decision.lr_scale;
      result.exit_code = result.remedy_restart_requested ? kExitOk : kExitStabilityAbort;
      result.final_step = step;
      result.final_val_loss = last_val_loss_;
      result.message = decision.abort_message;
      return result;
    }

    tokens_seen_ += tokens_per_step;
    const int64_t completed = step + 1;
    const bool last = completed == total || completed == config_.train.stop_at;
    if ((config_.train.eval_every > 0 && completed % config_.train.eval_every == 0) || completed == total) {
      last_val_loss_ = evaluate();
      if (std::isnan(best_val_loss_) || last_val_loss_ < best_val_loss_) best_val_loss_ = last_val_loss_;
      for (const auto& event : monitor_->observe_validation(completed, last_val_loss_)) log_event(event);
      record["val_loss"] = last_val_loss_;
      record["val_perplexity"] = std::exp(last_val_loss_);
    }
    if (config_.diagnostics.every > 0 && completed % config_.diagnostics.every == 0 && groups_->dp_rank() == 0) {
      // On the fixed probe batch, without gradients and with the RNG untouched (model_diagnostics.h).
      // Collective over the TP group (heads and MLP units are split), so every rank of the lead's
      // TP group (DP rank 0) computes them; DP replicas hold the same model and skip them.
      auto diagnostics = compute_diagnostics(*model_, probe_tokens_, config_.diagnostics);
      if (lead_)
        for (const auto& [name, value] : diagnostics.flat_metrics()) record[name] = value;
    }
    const double step_seconds = seconds_since(step_start);
    if (step - start_step_ >= 3) {  // the first steps pay for allocator and kernel warm-up
      timed_tokens += tokens_per_step;
      timed_seconds += step_seconds;
    }
    step_time_ema = step == start_step_ ? step_seconds : 0.9 * step_time_ema + 0.1 * step_seconds;
    record["step_time"] = step_seconds;
    record["tokens_per_second"] = static_cast<double>(tokens_per_step) / step_seconds;
    if (job_peak > 0) record["mfu"] = flops_per_token * static_cast<double>(tokens_per_step) / step_seconds / job_peak;
    record["tokens_seen"] = tokens_seen_;
    if (device_.is_cuda()) record["gpu_memory_peak_bytes"] = cuda_peak_allocated_bytes(device_.index());
    nlohmann::json layer_norms;
    for (size_t i = 0; i < layer_names_.size(); ++i) layer_norms[layer_names_[i]] = signals.layer_grad_norms[i];
    record["layer_grad_norms"] = layer_norms;
    report_to_coordinator(record);
    if (lead_) metrics_->append(record);

    if (lead_ && (completed % config_.train.log_every == 0 || last || completed == 1)) {
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
    if (step < total && preemption_agreed()) {
      // Preempted (SIGTERM/SIGUSR1, forwarded by the launcher): this step is done; save it and leave
      // so the scheduler can requeue the job, which resumes from here exactly.
      save_checkpoint(step);
      result.preempted = true;
      break;
    }
  }
  if (lead_) progress_.finish();
  if (device_.is_cuda()) {
    result.peak_device_memory_bytes = cuda_peak_allocated_bytes(device_.index());
    log::info(strprintf("peak GPU memory allocated: %.2f GiB", result.peak_device_memory_bytes / 1073741824.0));
  }
  result.final_step = step;
  if (step < total && config_.checkpoint.save_final) save_checkpoint(step);
  result.final_val_loss = last_val_loss_;
  if (result.preempted) {
    result.message = "preempted by signal " + std::to_string(preemption::signal_number()) + " after step " +
                     std::to_string(step) + "; checkpoint " + store_->path_of(step) + " saved";
    if (lead_) log::warn(result.message);
  }
  result.mean_tokens_per_second = timed_seconds > 0 ? static_cast<double>(timed_tokens) / timed_seconds : 0.0;
  result.exit_code = result.preempted ? kExitPreempted : kExitOk;
  return result;
}

}  // namespace

TrainResult train_run(RunConfig config, const TrainOptions& options) {
  Trainer trainer(std::move(config), options);
  return trainer.run();
}

}  // namespace keel
