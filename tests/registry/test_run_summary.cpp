// Run summaries, config differences and table formatting.
#include <gtest/gtest.h>

#include <cmath>

#include "common/check.h"
#include "registry/run_summary.h"
#include "tests/registry/registry_test_util.h"
#include "tests/registry/rollback_run_fixture.h"

namespace keel::registry {
namespace {

using testing::RunSpec;
using testing::TempDir;
using testing::write_run_dir;

TEST(RunSummary, CountsEventsByKindAndAction) {
  TempDir tmp;
  write_run_dir(tmp.path() + "/vanilla");
  RunSummary s = summarize_run_dir(tmp.path() + "/vanilla");
  EXPECT_EQ(s.name, "vanilla");
  EXPECT_EQ(s.status, "completed");
  EXPECT_EQ(s.steps, 100);
  EXPECT_EQ(s.final_step, 100);
  EXPECT_EQ(s.events, 4);
  EXPECT_EQ(s.loss_spikes, 2);  // loss_spike + sustained_spike
  EXPECT_EQ(s.grad_explosions, 1);
  EXPECT_EQ(s.nonfinite, 1);
  EXPECT_EQ(s.skips, 1);
  EXPECT_EQ(s.rollbacks, 1);
  EXPECT_EQ(s.events_by_kind.at("loss_spike"), 1);
  EXPECT_EQ(s.events_by_kind.at("sustained_spike"), 1);
  EXPECT_EQ(s.events_by_action.at("none"), 2);
  EXPECT_NEAR(s.final_val_loss, 4.1, 1e-12);
  EXPECT_NEAR(s.best_val_loss, 4.1, 1e-12);
  // metrics/throughput.h: tokens of the timed steps / their time; the first 3 are warm-up (the
  // fixture has no marks), so the mean of 1003..1099 at 0.5 s each, not run_info.json's 1049.5.
  EXPECT_NEAR(s.tokens_per_second, 1051.0, 1e-9);
  EXPECT_EQ(s.replayed_steps, 0);
  EXPECT_NEAR(s.wall_seconds, 100.5, 1e-12);
  EXPECT_NEAR(s.max_grad_norm, 20.0 + 2.0 * std::exp(-71 / 30.0) + 0.3, 1e-9);

  // The same from the registry rows.
  RunRegistry registry(tmp.path() + "/registry.sqlite");
  auto id = registry.import_run_dir(tmp.path() + "/vanilla", 10);
  RunSummary r = summarize_registry_run(registry, id);
  EXPECT_EQ(r.loss_spikes, 2);
  EXPECT_EQ(r.skips, 1);
  EXPECT_EQ(r.rollbacks, 1);
  EXPECT_EQ(r.steps, 100);  // the run's steps, not the downsampled rows
  EXPECT_EQ(r.replayed_steps, -1);  // unknown from downsampled rows
  EXPECT_NEAR(r.tokens_per_second, 1051.0, 1e-9);  // the same throughput as from the files
  EXPECT_NEAR(r.best_val_loss, 4.1, 1e-12);
  EXPECT_THROW(summarize_registry_run(registry, "/nope"), KeelError);
}

// Issue 27 item 3: one rollback with three detector events counts once; steps are the run's 10,
// with the 3 replayed steps apart; throughput is the timed steps' tokens over their time (the warm-up
// marks exclude the 100 tokens/s steps), whatever run_info.json says.
TEST(RunSummary, OneRollbackOnceStepsWithoutReplaysOneThroughput) {
  TempDir tmp;
  testing::write_rollback_run(tmp.path() + "/r");
  const RunSummary s = summarize_run_dir(tmp.path() + "/r");
  EXPECT_EQ(s.rollbacks, 1);
  EXPECT_EQ(s.events, 3);
  EXPECT_EQ(s.steps, 10);
  EXPECT_EQ(s.replayed_steps, 2) << "steps 4 and 5 ran twice (6 spiked and was rolled back, not completed)";
  // Timed: steps 3, 4, 5 at 1000 tokens/s and 7, 8, 9 at 2000, 0.25 s each.
  EXPECT_NEAR(s.tokens_per_second, (3 * 250.0 + 3 * 500.0) / 1.5, 1e-9);

  // The registry keeps the same figure for `keel runs`.
  RunRegistry registry(tmp.path() + "/registry.sqlite");
  const auto id = registry.import_run_dir(tmp.path() + "/r", 10);
  EXPECT_NEAR(registry.get_run(id)->tokens_per_second, s.tokens_per_second, 1e-9);
  EXPECT_EQ(summarize_registry_run(registry, id).rollbacks, 1);
}

TEST(RunSummary, ARunTooShortToTimeHasNoThroughputNotZero) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/short";
  testing::write(dir + "/metrics.jsonl",
                 "{\"step\": 0, \"loss\": 7, \"tokens_per_second\": 10, \"step_time\": 1, \"warmup\": true}\n"
                 "{\"step\": 1, \"loss\": 6, \"tokens_per_second\": 10, \"step_time\": 1, \"warmup\": true}\n");
  testing::write(dir + "/run_info.json", "{\"status\": \"completed\", \"final_step\": 2, \"tokens_per_second\": 0}");
  const RunSummary s = summarize_run_dir(dir);
  EXPECT_TRUE(std::isnan(s.tokens_per_second)) << s.tokens_per_second;
  EXPECT_EQ(format_number(s.tokens_per_second, 0), "-");
}

TEST(RunSummary, WallTimeFallsBackToStepTimes) {
  TempDir tmp;
  RunSpec spec;
  spec.with_run_info = false;
  write_run_dir(tmp.path() + "/r", spec);
  RunSummary s = summarize_run_dir(tmp.path() + "/r");
  EXPECT_NEAR(s.wall_seconds, 50.0, 1e-9);  // 100 steps x 0.5 s
  EXPECT_EQ(s.status, "unknown");
}

TEST(ConfigDifferences, FindsExactlyTheDifferingKeys) {
  TempDir tmp;
  RunSpec a, b, c;
  b.recipe = "scaled-embed";
  b.embed_scale = 13.9;
  c.recipe = "embed-ln";
  c.norm = "none";
  write_run_dir(tmp.path() + "/a", a);
  write_run_dir(tmp.path() + "/b", b);
  write_run_dir(tmp.path() + "/c", c);
  std::vector<RunSummary> runs = {summarize_run_dir(tmp.path() + "/a"), summarize_run_dir(tmp.path() + "/b"),
                                  summarize_run_dir(tmp.path() + "/c")};
  auto diffs = config_differences(runs);
  ASSERT_EQ(diffs.size(), 3u);
  EXPECT_EQ(diffs[0].key, "model.embed_scale");
  EXPECT_EQ(diffs[1].key, "model.norm");
  EXPECT_EQ(diffs[2].key, "run.recipe");
  EXPECT_EQ(diffs[2].values, (std::vector<std::string>{"vanilla", "scaled-embed", "embed-ln"}));
  EXPECT_EQ(diffs[1].values, (std::vector<std::string>{"pre_ln", "pre_ln", "none"}));

  // Numbers compare by value; a missing key and a differing sequence count.
  auto d = config_differences(std::vector<std::string>{
      "train:\n  lr: 0.1\n  steps: 10\nstab:\n  w: [1, 2]\n",
      "train:\n  lr: 0.10000000000000001\nstab:\n  w: [1, 3]\nextra:\n  x: 1\n"});
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].key, "extra.x");
  EXPECT_EQ(d[0].values, (std::vector<std::string>{"(absent)", "1"}));
  EXPECT_EQ(d[1].key, "stab.w");
  EXPECT_EQ(d[1].values, (std::vector<std::string>{"[1, 2]", "[1, 3]"}));
  EXPECT_EQ(d[2].key, "train.steps");
  EXPECT_TRUE(config_differences(std::vector<std::string>{"a:\n  b: 1\n", "a:\n  b: 1\n"}).empty());
  EXPECT_THROW(flatten_config("a: [1, 2\n"), KeelError);
}

TEST(FormatTable, AlignsColumns) {
  const std::string t = format_table({"run", "loss"}, {{"a", "1.50"}, {"longer", "12.25"}});
  EXPECT_EQ(t, "run      loss\n------  -----\na        1.50\nlonger  12.25\n");
  EXPECT_EQ(format_number(std::nan(""), 3), "-");
  EXPECT_EQ(format_duration(127.3), "2m07s");
  EXPECT_EQ(format_duration(5.25), "5.2s");
}

}  // namespace
}  // namespace keel::registry
