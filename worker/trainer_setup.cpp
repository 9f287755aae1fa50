// Building a run (see trainer_internal.h): the run directory and its files, the data, the
// stability monitor, the model and AdamW, the DP gradient reducer, the "Spike No More" start-up
// check; resuming from a checkpoint (--resume, --resume-from), starting from another run's weights
// (train.init_from), and rebuilding the initial state when the monitor orders a restart.
#include <torch/torch.h>

#include <algorithm>
#include <optional>
#include <set>

#include "checkpoint_torch/training_checkpoint.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"
#include "data/token_statistics.h"
#include "device/device_memory.h"
#include "metrics/metric_keys.h"
#include "device/select_device.h"
#include "diagnostics/spike_conditions.h"
#include "model/tensor_parallel_layout.h"
#include "worker/resume_compatibility.h"
#include "worker/memory_floor.h"
#include "worker/trainer_internal.h"
#include "worker/training_data.h"
#include "worker/world_agreement.h"

namespace keel {
namespace {

// "10, 20, 30" (or "none").
std::string fmt_steps(const std::vector<int64_t>& steps) {
  std::string out;
  for (int64_t s : steps) out += (out.empty() ? "" : ", ") + std::to_string(s);
  return out.empty() ? "none" : out;
}

}  // namespace

Trainer::Trainer(RunConfig config, TrainOptions options)
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
             "the " << groups_->world().backend() << " backend needs " << (host_collectives ? "CPU" : "CUDA")
                    << " tensors but this run trains on " << device_.str()
                    << " (use parallel.backend=nccl on GPUs, mpi on CPUs)");
  KEEL_CHECK(!(device_.is_cpu() && config_.train.precision == "bf16"),
             "train.precision=bf16 needs a CUDA device (CPU runs train in fp32)");
  config_.stability.validate();
  tokens_per_step_ = config_.train.batch_size * config_.seq_len() * config_.train.grad_accum * groups_->dp_size();
}

void Trainer::setup() {
  // Before anything is written or prepared: a shape that can never fit this device is refused in a second.
  const int64_t capacity = device_.is_cuda() ? cuda_total_memory_bytes(device_.index()) : host_memory_bytes();
  const std::string memory_problem =
      memory_floor_problem(config_, groups_->tp_size(), capacity,
                           device_.is_cuda() ? "GPU " + device_.str() : std::string("this host's RAM"));
  if (!memory_problem.empty()) throw ConfigError(memory_problem);

  auto& world = groups_->world();
  fs::make_dirs(options_.run_dir);
  {
    checkpoint::CheckpointStore store(options_.run_dir + "/checkpoints");
    KEEL_CHECK(options_.resume || store.list_steps().empty(),
               "run directory '" << options_.run_dir
                                 << "' already has checkpoints: pass --resume to continue it, or choose another --run-dir");
  }
  world.barrier();  // every rank looked before rank 0 changes anything
  if (lead_) {
    checkpoint::CheckpointStore(options_.run_dir + "/checkpoints").remove_stale_temporaries();
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
  const auto train_shards = glob_shards(config_.data.dir, config_.data.train_pattern);
  train_loader_ = std::make_unique<DataLoader>(train_shards, config_.train.batch_size, T, groups_->dp_rank(),
                                               groups_->dp_size());
  train_loader_->check_vocab(config_.model.vocab_size);
  val_shards_ = glob_shards(config_.data.dir, config_.data.val_pattern);
  std::string eval_warning;
  config_.train.eval_batches = eval_batches_that_fit(val_shards_, config_.train.eval_batches, config_.train.batch_size,
                                                     T, groups_->dp_size(), &eval_warning);
  if (lead_ && !eval_warning.empty()) log::warn(eval_warning);
  build_monitor(train_shards);
  checkpoints_ = std::make_unique<CheckpointCommitter>(options_.run_dir, *groups_, options_.coordinator,
                                                       config_.checkpoint.keep, *monitor_);
  faults_ = std::make_unique<FaultInjector>(config_.debug, config_.train.seed, config_.data.vocab_size, lead_);
  build_model_and_optimizer();

  if (config_.diagnostics.every > 0) {
    DataLoader probe_loader(val_shards_, config_.diagnostics.probe_batch_size, T);
    auto batch = probe_loader.next();
    probe_tokens_ = to_device_tokens(batch.inputs, batch.batch_size, T, device_);
  }
  check_spike_conditions_once();

  // Model FLOPs per token (PaLM appendix B: 6N + 12 L d T) against the peak of every device.
  StepRecordFacts facts;
  facts.tokens_per_step = tokens_per_step_;
  facts.flops_per_token = 6.0 * static_cast<double>(model_->num_non_embedding_parameters()) +
                          12.0 * static_cast<double>(config_.model.num_layers * config_.model.d_model * T);
  const double device_peak = config_.train.peak_flops > 0 ? config_.train.peak_flops
                             : device_.is_cuda()          ? cuda_peak_bf16_flops(device_.index())
                                                          : 0.0;
  facts.job_peak_flops = device_peak * static_cast<double>(world.size());
  facts.cuda_device = device_.is_cuda() ? device_.index() : -1;
  phases_ = std::make_unique<PhaseClock>(facts.cuda_device, phase_name::kBetweenSteps);
  recorder_ = std::make_unique<StepRecorder>(facts, signals_->layer_names(),
                                             lead_ ? options_.run_dir + "/metrics.jsonl" : "", options_.coordinator);
  if (lead_) events_ = std::make_unique<JsonLinesLog>(options_.run_dir + "/events.jsonl");
}

void Trainer::build_model_and_optimizer() {
  model_ = Gpt(config_.model, &groups_->tp());
  model_->set_fused_cross_entropy(config_.train.fused_cross_entropy);
  model_->set_fused_residual_norm(config_.train.fused_residual_norm);
  model_->to(device_);
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  std::vector<bool> decay, sharded;
  for (const auto& item : model_->named_parameters()) {
    names.push_back(item.key());
    params.push_back(item.value());
    decay.push_back(model_->decays(item.key()));
    sharded.push_back(groups_->tp_size() > 1 && shard_kind(item.key()) != ShardKind::kReplicated);
  }
  AdamWOptions adam;
  adam.beta1 = config_.train.beta1;
  adam.beta2 = config_.train.beta2;
  adam.eps = config_.train.eps;
  adam.weight_decay = config_.train.weight_decay;
  adam.independent_decay = config_.train.weight_decay_mode == "independent";
  adam.peak_lr = config_.train.lr;
  // Sharded even over a DP group of one (one shard: everything), so a single GPU runs the same path.
  if (config_.parallel.shard_optimizer) {
    int64_t total = 0;
    for (const auto& p : params) total += p.numel();
    optimizer_ = std::make_unique<AdamW>(names, params, decay, adam,
                                         owned_flat_range(total, groups_->dp().rank(), groups_->dp().size()));
    sharding_ = std::make_unique<OptimizerSharding>(groups_->dp(), *optimizer_, config_.parallel.shard_gradients);
  } else {
    optimizer_ = std::make_unique<AdamW>(names, params, decay, adam);
  }
  signals_ = std::make_unique<StepSignalReader>(model_, params, sharded, groups_->tp(), device_);
  // ZeRO-2 reduce-scatters the gradients itself (optimizer_sharding.h): no all-reduce buckets.
  if (groups_->dp_size() > 1 && !(sharding_ && sharding_->shards_gradients())) {
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
  schedule_ = LrSchedule{config_.train.lr,           config_.train.warmup_steps,       config_.train.steps,
                         config_.train.min_lr_ratio, config_.train.schedule == "wsd", config_.train.decay_fraction};
  if (!lead_) return;
  log::info(strprintf("model: %lld parameters (%lld non-embedding), %lld layers, d=%lld, heads=%lld, recipe '%s', "
                      "device %s%s",
                      static_cast<long long>(model_->num_parameters()),
                      static_cast<long long>(model_->num_non_embedding_parameters()),
                      static_cast<long long>(config_.model.num_layers), static_cast<long long>(config_.model.d_model),
                      static_cast<long long>(config_.model.num_heads), config_.run.recipe.c_str(),
                      device_.str().c_str(), use_bf16_ ? " (bf16 autocast)" : ""));
  if (groups_->world().size() > 1)
    log::info(strprintf("parallel: world %d = dp %d x tp %d, %s collectives", groups_->world().size(),
                        groups_->dp_size(), groups_->tp_size(), groups_->world().backend().c_str()));
  // The optimizer state this rank holds: both AdamW moments (whole, or its 1/dp share).
  const double mib = static_cast<double>(optimizer_->state_bytes()) / (1024.0 * 1024.0);
  const double whole_mib = 2.0 * static_cast<double>(optimizer_->flat_size()) *
                           static_cast<double>(optimizer_->params().at(0).element_size()) / (1024.0 * 1024.0);
  log::info(sharding_ ? strprintf("optimizer: AdamW moments sharded over dp %d (%s): %.2f MiB on this rank, "
                                  "%.2f MiB unsharded",
                                  groups_->dp_size(),
                                  sharding_->shards_gradients() ? "ZeRO-2, gradients reduce-scattered" : "ZeRO-1",
                                  mib, whole_mib)
                      : strprintf("optimizer: AdamW moments %.2f MiB on this rank", mib));
}

void Trainer::check_spike_conditions_once() {
  // "Spike No More" conditions on the freshly built model (before any resume changes the weights).
  const int64_t T = config_.seq_len();
  DataLoader probe_loader(val_shards_, std::min<int64_t>(config_.train.batch_size, 4), T);
  auto batch = probe_loader.next();
  auto report = check_spike_conditions(*model_, to_device_tokens(batch.inputs, batch.batch_size, T, device_));
  if (!lead_) return;
  for (const auto& line : report.lines()) log::info("spike-no-more: " + line);
  if (report.warn) log::warn("spike-no-more: " + report.warning);
  fs::write_file_atomic(options_.run_dir + "/spike_conditions.json", report.to_json().dump(2) + "\n");
}

void Trainer::build_monitor(const std::vector<std::string>& train_shards) {
  RunFacts facts;
  facts.tokens_per_step = tokens_per_step_;
  facts.total_steps = config_.train.steps;
  facts.vocab_size = config_.model.vocab_size;
  facts.peak_lr = config_.train.lr;
  facts.lr_warmup_steps = config_.train.warmup_steps;
  facts.adam_beta2 = config_.train.beta2;
  facts.normalized = config_.model.norm != "none";
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

void Trainer::resume_if_asked() {
  if (!options_.resume) return;
  auto& store = checkpoints_->store();
  auto& world = groups_->world();
  std::vector<std::string> rejected;
  std::optional<int64_t> latest;
  if (options_.resume_from_step >= 0) {
    // --resume-from STEP: exactly that checkpoint (complete and verified), newer ones set aside.
    const auto verified = store.verify(options_.resume_from_step);
    KEEL_CHECK(verified.ok, "--resume-from " << options_.resume_from_step << ": no complete checkpoint "
                                             << store.path_of(options_.resume_from_step) << " (" << verified.problem
                                             << "); checkpoints present: " << fmt_steps(store.list_steps()));
    latest = options_.resume_from_step;
    check_agreement(world, device_, static_cast<uint64_t>(*latest + 1), "the checkpoint to resume from");
    checkpoints_->set_aside_after(*latest, "checkpoints-set-aside", "--resume-from " + std::to_string(*latest));
    world.barrier();
  } else {
    latest = store.latest_valid(&rejected);
  }
  for (const auto& why : rejected) {
    if (lead_) log::warn("resume: skipping damaged checkpoint: " + why);
  }
  if (options_.resume_from_step < 0)
    check_agreement(world, device_, static_cast<uint64_t>(latest ? *latest + 1 : 0), "the checkpoint to resume from");
  if (!latest) {
    if (lead_) log::warn("--resume: no complete checkpoint in '" + options_.run_dir + "/checkpoints'; starting from step 0");
    return;
  }
  check_resume_compatible(store.path_of(*latest), config_);
  restore_checkpoint(*latest, /*restore_monitor=*/true);
  checkpoints_->adopt_after_resume(*latest);
  if (!lead_) return;
  recorder_->truncate_from(start_step_);
  events_->truncate_from_step(start_step_);
  log::info("resumed from " + store.path_of(*latest) + " at step " + std::to_string(start_step_));
}

void Trainer::init_from_checkpoint() {
  const std::string& from = config_.train.init_from;
  if (from.empty() || start_step_ > 0) return;  // a resumed run continues from its own checkpoints
  const std::vector<std::string> fresh = init_model_from_checkpoint(from, model_, checkpoints_->role());
  const double val_loss = evaluate();  // the starting point that uptraining improves on
  if (!lead_) return;
  log::info(strprintf("initialised from %s (%zu parameters it lacks keep their fresh init); val loss at step 0: %.4f",
                      from.c_str(), fresh.size(), val_loss));
  const nlohmann::json info = {{"checkpoint", from}, {"fresh_parameters", fresh}, {"val_loss", val_loss}};
  fs::write_file_atomic(options_.run_dir + "/init_from.json", info.dump(2) + "\n");
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
    init_model_from_checkpoint(config_.train.init_from, model_, checkpoints_->role());
  start_step_ = 0;
  tokens_seen_ = 0;
  train_loader_->set_cursor(DataCursor{});
  torch::manual_seed(static_cast<uint64_t>(config_.train.seed));
  if (lead_) log::info("stability: model and optimizer rebuilt from the seed (the initial state)");
}

}  // namespace keel
