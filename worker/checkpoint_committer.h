// How a run's checkpoints are saved, restored and set aside, one path for any world size, and
// the one ledger of which checkpoints exist. Saving is two-phase: every shard writer (the DP-rank-0
// member of each TP group, or every rank when the optimizer is sharded over DP and each DP rank
// writes its own optimizer shard; the only process in a world of one) writes its files into the
// step's shared temporary folder; each reports its shard to the coordinator, which commits the step
// once all shards are in; only then does world rank 0 check that every shard file of the layout is
// there, seal the folder (manifest with every file's size and CRC-32, rename) and prune old ones.
// Without a coordinator the barrier is the commit.
//
// The ledger: the store's folders are the truth on disk; the stability monitor's tracker must only
// name checkpoints that still exist (a rollback target that was pruned would be fatal), so every
// save, prune, rollback and resume goes through here and tells the monitor what changed.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "checkpoint/checkpoint_store.h"
#include "checkpoint_torch/training_checkpoint.h"
#include "parallel/process_groups.h"
#include "stability/stability_monitor.h"

namespace keel::coord {
class CoordinatorClient;
}

namespace keel {

class CheckpointCommitter {
 public:
  // `coordinator` may be null (no coordinator: the barrier is the commit). Borrowed; they outlive
  // this. `keep`: checkpoint.keep (retention; the monitor's protected checkpoints always stay).
  CheckpointCommitter(const std::string& run_dir, parallel::ProcessGroups& groups,
                      coord::CoordinatorClient* coordinator, int64_t keep, StabilityMonitor& monitor);

  checkpoint::CheckpointStore& store() { return *store_; }
  // Which files of a checkpoint this process writes and reads.
  CheckpointRole role() const;
  int64_t last_saved_step() const { return last_saved_step_; }

  // Saves `state.step` (no-op when that step was just saved); collective over the world.
  void save(Gpt& model, AdamW& optimizer, const TrainerState& state, const std::string& config_yaml);
  // Restores model, optimizer and RNG in place from checkpoint `step`; returns its state.
  TrainerState restore(int64_t step, Gpt& model, AdamW& optimizer);
  // After a resume from `step`: the checkpoints up to it (on disk, and those the restored monitor
  // state knows of) join the ledger; the pruned ones are forgotten.
  void adopt_after_resume(int64_t step);
  // Moves checkpoints newer than `step` into `folder` under the run directory, kept but never
  // resumed from (--resume-from an older step). World rank 0 only acts.
  void set_aside_after(int64_t step, const std::string& folder, const std::string& why);
  // After a rollback to `target` at `at_step`: the newer checkpoints belong to the abandoned
  // timeline; they go to checkpoints-abandoned/rollback-K-at-step-S/ and leave the ledger.
  void abandon_after(int64_t target, int64_t at_step);

 private:
  // Tells the monitor about checkpoints of the ledger that are no longer on disk.
  void forget_pruned();

  std::string run_dir_;
  parallel::ProcessGroups& groups_;
  coord::CoordinatorClient* coordinator_;
  int64_t keep_;
  StabilityMonitor& monitor_;
  bool lead_;
  std::unique_ptr<checkpoint::CheckpointStore> store_;
  std::set<int64_t> saved_steps_;  // committed checkpoints the monitor knows of
  int64_t last_saved_step_ = -1;
};

}  // namespace keel
