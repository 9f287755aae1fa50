// Checkpoint saves, restores and the ledger (see checkpoint_committer.h).
#include "worker/checkpoint_committer.h"

#include <algorithm>
#include <chrono>

#include "checkpoint_torch/optimizer_shard_files.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"
#include "metrics/metric_keys.h"
#include "rpc/coordinator_client.h"

namespace keel {

CheckpointCommitter::CheckpointCommitter(const std::string& run_dir, parallel::ProcessGroups& groups,
                                         coord::CoordinatorClient* coordinator, int64_t keep,
                                         StabilityMonitor& monitor)
    : run_dir_(run_dir),
      groups_(groups),
      coordinator_(coordinator),
      keep_(keep),
      monitor_(monitor),
      lead_(groups.world().rank() == 0),
      store_(std::make_unique<checkpoint::CheckpointStore>(run_dir + "/checkpoints")) {}

CheckpointRole CheckpointCommitter::role() const {
  CheckpointRole role;
  role.tp_rank = groups_.tp_rank();
  role.tp_size = groups_.tp_size();
  role.dp_rank = groups_.dp_rank();
  role.dp_size = groups_.dp_size();
  role.writes_shard = groups_.dp_rank() == 0;
  role.writes_common = lead_;
  return role;
}

void CheckpointCommitter::save(Gpt& model, AdamW& optimizer, const TrainerState& state,
                               const std::string& config_yaml) {
  const int64_t step = state.step;
  if (last_saved_step_ == step) return;
  const auto start = std::chrono::steady_clock::now();
  auto& world = groups_.world();
  // Phase one: the shard writers write their files into the step's shared folder (with a sharded
  // optimizer every DP rank writes its own optimizer shard).
  auto pending = store_->begin_shared(step, "job");
  const CheckpointRole writer = role();
  const bool shard_writer = writes_shard_files(optimizer, writer);
  const bool every_dp_rank = optimizer_dp_shards(optimizer, writer.dp_size) > 1;
  ShardWriteReport written;
  if (shard_writer || writer.writes_common)
    written = write_checkpoint_files(pending.dir(), model, optimizer, state, config_yaml, writer);
  // Phase two: the coordinator commits the step once every shard is in (rank 0 waits for it).
  bool committed = true;
  if (coordinator_ && shard_writer)
    committed = coordinator_->commit_shard(step, written.shard_name, written.bytes, written.crc32,
                                           /*wait_seconds=*/lead_ ? 600.0 : 0.0, every_dp_rank);
  monitor_.on_checkpoint_saved(step);
  world.barrier();
  if (lead_) {
    KEEL_CHECK(committed, "the coordinator did not commit checkpoint step " << step << " (a shard writer is missing)");
    // Every shard file of the layout is there before the manifest lists the folder's files.
    for (const auto& file : expected_shard_files(optimizer, writer))
      KEEL_CHECK(fs::exists(pending.file(file)), "checkpoint step " << step << ": shard file " << file
                                                                    << " was not written (" << pending.dir() << ")");
    store_->commit(std::move(pending), {{"tokens_seen", state.tokens_seen}});
    store_->prune(keep_, monitor_.protected_checkpoints());
  } else {
    pending.release();
  }
  world.barrier();  // the checkpoint is final (and pruned) before any rank moves on
  last_saved_step_ = step;
  saved_steps_.insert(step);
  forget_pruned();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (coordinator_ && written.bytes > 0)
    coordinator_->report_metrics_async(step, {{metric_key::kCheckpointSaveSeconds, seconds},
                                              {metric_key::kCheckpointBytes, static_cast<double>(written.bytes)}});
  if (lead_) log::info(strprintf("checkpoint %s saved in %.2fs", store_->path_of(step).c_str(), seconds));
}

TrainerState CheckpointCommitter::restore(int64_t step, Gpt& model, AdamW& optimizer) {
  TrainerState state = load_training_checkpoint(store_->path_of(step), model, optimizer, role());
  last_saved_step_ = step;
  return state;
}

void CheckpointCommitter::adopt_after_resume(int64_t step) {
  for (int64_t saved : store_->list_steps()) {
    if (saved <= step) saved_steps_.insert(saved);
  }
  // The saved monitor state predates the retention that followed its checkpoint: the checkpoints
  // it knows of join the ledger and the usual reconciliation forgets the pruned ones (the initial
  // state is rebuilt from the seed, never a directory).
  for (int64_t known : monitor_.tracker().checkpoints()) {
    if (known > 0) saved_steps_.insert(known);
  }
  forget_pruned();
}

void CheckpointCommitter::forget_pruned() {
  const auto present = store_->list_steps();
  for (auto it = saved_steps_.begin(); it != saved_steps_.end();) {
    if (std::find(present.begin(), present.end(), *it) == present.end()) {
      monitor_.on_checkpoint_deleted(*it);
      it = saved_steps_.erase(it);
    } else {
      ++it;
    }
  }
}

void CheckpointCommitter::set_aside_after(int64_t step, const std::string& folder, const std::string& why) {
  if (!lead_) return;
  const std::string aside = run_dir_ + "/" + folder;
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

void CheckpointCommitter::abandon_after(int64_t target, int64_t at_step) {
  // One folder per rollback (a later timeline may save the same steps again).
  int attempt = 1;
  std::string folder;
  do {
    folder = "checkpoints-abandoned/rollback-" + std::to_string(attempt++) + "-at-step-" + std::to_string(at_step);
  } while (lead_ && fs::exists(run_dir_ + "/" + folder));
  set_aside_after(target, folder, "rollback to step " + std::to_string(target));
  saved_steps_.erase(saved_steps_.upper_bound(target), saved_steps_.end());
  last_saved_step_ = std::min(last_saved_step_, target);
}

}  // namespace keel
