// `keel uptrain --from CHECKPOINT [--steps N] [--set section.key=value ...] [--run-dir DIR] [--nproc N]`
//
// Linearises a softmax-attention checkpoint (SUPRA, arXiv 2405.06640; model/linear_attention.h)
// and continues training it on the corpus: a new run with the checkpoint's own config and
//   model.attention=linear            the pretrained q/k/v/o kept, SUPRA's feature maps and
//                                     GroupNorms freshly initialised
//   train.init_from=CHECKPOINT        the trainer starts from its weights (worker/trainer.h) and
//                                     writes init_from.json with the linearised model's val loss
//   train.steps=N                     default: 10% of the parent run's train.steps
//   run.recipe=<recipe>-supra         so the run folder is <recipe>-supra-<timestamp>
// then the --set overrides. Everything else is `keel train` (cli/train_command.cpp): the same loop,
// monitor, checkpoints and run registry; run_info.json names the parent run.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "checkpoint/checkpoint_store.h"
#include "cli/checkpoint_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/check.h"
#include "worker/run_config.h"

namespace keel::cli {
namespace {

namespace stdfs = std::filesystem;

}  // namespace

int uptrain_command(const std::vector<std::string>& args) {
  CLI::App app("Convert a softmax-attention checkpoint to SUPRA linear attention and continue training",
               "keel uptrain");
  std::string from, run_dir;
  std::vector<std::string> overrides;
  int64_t steps = 0;
  int nproc = 0, max_restarts = 0;
  app.add_option("--from", from, "checkpoint folder, or a run directory (its newest checkpoint)")->required();
  app.add_option("--steps", steps, "uptraining steps (default: 10% of the parent run's train.steps)");
  app.add_option("--set", overrides, "override a config key: section.key=value (repeatable)")->take_all();
  app.add_option("--run-dir", run_dir, "run directory (default: RUNS_ROOT/RECIPE-supra-TIMESTAMP)");
  app.add_option("--nproc", nproc, "run as a distributed job of N local keel-worker processes");
  app.add_option("--max-restarts", max_restarts, "with --nproc: restart a failed job up to K times");
  if (int code = parse_args(app, args); code >= 0) return code;

  std::vector<std::string> train_args;
  int setup = run_guarded("uptrain", [&]() -> int {
    const std::string checkpoint = stdfs::absolute(resolve_checkpoint(from, "uptrain")).lexically_normal().string();
    std::string config_path = checkpoint + "/config.yaml";
    if (!stdfs::exists(config_path))  // a TP shard writer's folder: the run's own config
      config_path = stdfs::path(checkpoint).parent_path().parent_path().string() + "/config.yaml";
    KEEL_CHECK(stdfs::exists(config_path), "no config.yaml in '" << checkpoint << "' or its run directory");
    const RunConfig parent = RunConfig::load(config_path, {});
    if (steps <= 0) steps = std::max<int64_t>(1, parent.train.steps / 10);
    const int64_t warmup = std::min<int64_t>(parent.train.warmup_steps, std::max<int64_t>(1, steps / 10));
    std::cerr << "keel uptrain: linearising " << checkpoint << " (recipe '" << parent.run.recipe << "', "
              << parent.train.steps << " pretraining steps) and training it for " << steps << " steps\n";
    train_args = {config_path,
                  "--set", "model.attention=linear",
                  "--set", "train.init_from=" + checkpoint,
                  "--set", "train.steps=" + std::to_string(steps),
                  "--set", "train.warmup_steps=" + std::to_string(warmup),
                  "--set", "train.stop_at=-1",
                  "--set", "run.name=\"\"",
                  "--set", "run.recipe=" + parent.run.recipe + "-supra"};
    for (const auto& o : overrides) train_args.insert(train_args.end(), {"--set", o});
    if (!run_dir.empty()) train_args.insert(train_args.end(), {"--run-dir", run_dir});
    if (nproc > 0) train_args.insert(train_args.end(), {"--nproc", std::to_string(nproc)});
    if (max_restarts > 0) train_args.insert(train_args.end(), {"--max-restarts", std::to_string(max_restarts)});
    return 0;
  });
  if (setup != 0) return setup;
  return train_command(train_args);
}

}  // namespace keel::cli
