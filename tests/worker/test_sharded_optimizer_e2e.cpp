// The sharded optimizer (ZeRO-1, parallel.shard_optimizer) end to end on the CPU with real
// processes (`keel train --nproc N`: a real coordinator and mpirun ranks, MPI collectives): one
// process sharded is bit-identical to unsharded; DP=2 and DP=2 x TP=2 match one process on the
// doubled batch (losses, grad norms, final weights); stop + resume is bit-identical; a checkpoint re-shards on load (sharded DP=2 -> one process
// unsharded, and unsharded -> sharded DP=2) and stays on the reference curve; an injected spike is
// rolled back with the same events as one process; each rank reports the moments it holds. The
// same with the gradients reduce-scattered (ZeRO-2): DP=2, DP=2 x TP=2, resume, and an injected NaN
// gradient skipped as in one process.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "tests/worker/distributed_util.h"
#include "tests/worker/process_util.h"

namespace keel {
namespace {

using namespace keel::testing_util;

const std::string kSharded = "--set parallel.shard_optimizer=true ";
const std::string kShardedGradients = "--set parallel.shard_optimizer=true --set parallel.shard_gradients=true ";

TEST(ShardedOptimizer, DataParallelTwoRanksMatchesOneProcessAndHoldsHalfTheMoments) {
  const std::string dir = fresh_dir("zero-dp2");
  auto r = keel_train(dir, "--nproc 2 --set parallel.dp=2 --set train.batch_size=8 " + kSharded + common_args());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // tiny.yaml's model: 167,872 parameters (1.28 MiB of moments), 0.64 MiB a rank.
  EXPECT_NE(r.output.find("AdamW moments sharded over dp 2 (ZeRO-1): 0.64 MiB on this rank, 1.28 MiB unsharded"),
            std::string::npos)
      << r.output;
  expect_matches(reference_run(), dir, 1);
  // run_info.json: rank 0's share, half of the 8 bytes a parameter (rounded up to whole elements).
  const auto info = nlohmann::json::parse(read_bytes(dir + "/run_info.json"));
  const int64_t bytes = info.at("optimizer_state_bytes_per_rank").get<int64_t>();
  EXPECT_EQ(bytes % 8, 0) << bytes;
  EXPECT_NEAR(static_cast<double>(bytes), 0.64 * 1024 * 1024, 0.005 * 1024 * 1024) << bytes;
}

// One process, one shard (everything): the sharded path (flat moments, the all-gather of a world
// of one) is bit-identical to the unsharded optimizer.
TEST(ShardedOptimizer, OneProcessShardedIsBitIdenticalToUnsharded) {
  const std::string sharded = fresh_dir("zero-single"), whole = fresh_dir("zero-single-whole");
  auto a = keel_train(sharded, "--set train.batch_size=16 " + kSharded + common_args());
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_NE(a.output.find("AdamW moments sharded over dp 1 (ZeRO-1): 1.28 MiB on this rank"), std::string::npos)
      << a.output;
  ASSERT_EQ(keel_train(whole, "--set train.batch_size=16 " + common_args()).exit_code, 0);
  // One shard holds everything: both runs report the same optimizer state.
  const auto info_sharded = nlohmann::json::parse(read_bytes(sharded + "/run_info.json"));
  const auto info_whole = nlohmann::json::parse(read_bytes(whole + "/run_info.json"));
  EXPECT_EQ(info_sharded.at("optimizer_state_bytes_per_rank"), info_whole.at("optimizer_state_bytes_per_rank"));
  EXPECT_GT(info_whole.at("optimizer_state_bytes_per_rank").get<int64_t>(), 1000000);
  auto x = read_jsonl(sharded + "/metrics.jsonl"), y = read_jsonl(whole + "/metrics.jsonl");
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i]["loss"], y[i]["loss"]) << "step " << i;
    EXPECT_EQ(x[i]["grad_norm"], y[i]["grad_norm"]) << "step " << i;
    EXPECT_EQ(x[i]["update_ratio"], y[i]["update_ratio"]) << "step " << i;
  }
  for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
    const std::string tail = "/checkpoints/step_00000024/" + std::string(file);
    EXPECT_EQ(read_bytes(sharded + tail), read_bytes(whole + tail)) << file << " differs";
  }
}

TEST(ShardedOptimizer, DataTimesTensorParallelFourRanksMatchesOneProcess) {
  const std::string dir = fresh_dir("zero-dp2tp2");
  auto r = keel_train(dir, "--nproc 4 --set parallel.dp=2 --set parallel.tp=2 --set train.batch_size=8 " + kSharded +
                               common_args());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("AdamW moments sharded over dp 2 (ZeRO-1)"), std::string::npos) << r.output;
  expect_matches(reference_run(), dir, 2);
}

// ZeRO-2: the gradients reduce-scattered, each rank keeps its range's; the monitor's norms summed
// from the ranges.
TEST(ShardedOptimizer, GradientsReduceScatteredDataParallelTwoRanksMatchesOneProcess) {
  const std::string dir = fresh_dir("zero2-dp2");
  auto r = keel_train(dir, "--nproc 2 --set parallel.dp=2 --set train.batch_size=8 " + kShardedGradients + common_args());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("sharded over dp 2 (ZeRO-2, gradients reduce-scattered)"), std::string::npos) << r.output;
  expect_matches(reference_run(), dir, 1);
}

TEST(ShardedOptimizer, GradientsReduceScatteredDataTimesTensorParallelFourRanksMatchesOneProcess) {
  const std::string dir = fresh_dir("zero2-dp2tp2");
  auto r = keel_train(dir, "--nproc 4 --set parallel.dp=2 --set parallel.tp=2 --set train.batch_size=8 " +
                               kShardedGradients + common_args());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_matches(reference_run(), dir, 2);
}

// A NaN gradient on one rank reaches the monitor through the reduce-scatter and the summed norms:
// the step is skipped on every rank, as in one process.
TEST(ShardedOptimizer, GradientsReduceScatteredNanGradientIsSkippedLikeOneProcess) {
  const std::string args = "--set debug.inject_nan_grad_at=10 " + common_args();
  const std::string single = fresh_dir("zero2-nan-single"), dir = fresh_dir("zero2-nan-dp2");
  auto a = keel_train(single, "--set train.batch_size=16 " + args);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  auto r = keel_train(dir, "--nproc 2 --set parallel.dp=2 --set train.batch_size=8 " + kShardedGradients + args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto expected = read_jsonl(single + "/events.jsonl"), events = read_jsonl(dir + "/events.jsonl");
  ASSERT_FALSE(expected.empty());
  ASSERT_EQ(events.size(), expected.size()) << r.output;
  for (size_t i = 0; i < events.size(); ++i)
    for (const char* key : {"kind", "action", "step"})
      EXPECT_EQ(events[i].value(key, nlohmann::json()), expected[i].value(key, nlohmann::json())) << key;
  const auto records = read_jsonl(dir + "/metrics.jsonl");
  ASSERT_GT(records.size(), 10u);
  EXPECT_EQ(records[10].value("skipped", false), true) << records[10].dump();
  const auto reference = read_jsonl(single + "/metrics.jsonl");
  ASSERT_EQ(records.size(), reference.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const double x = reference[i]["loss"].get<double>(), y = records[i]["loss"].get<double>();
    EXPECT_NEAR(x, y, 2e-5 * std::abs(x)) << "loss at step " << i;
  }
}

// Stop at step 8 and resume: the same losses, grad norms and final checkpoint files, bit for bit,
// with the moments sharded (ZeRO-1) and with the gradients too (ZeRO-2).
TEST(ShardedOptimizer, StopAndResumeIsBitIdentical) {
  const std::string args = "--nproc 2 --set parallel.dp=2 --set train.batch_size=8 " + common_args() + " ";
  expect_stop_and_resume_identical("zero1", args + kSharded, {"model.safetensors", "optimizer.safetensors"});
  expect_stop_and_resume_identical("zero2", args + kShardedGradients, {"model.safetensors", "optimizer.safetensors"});
}

// The checkpoint holds whole moments whatever the sharding, so another world can load it.
TEST(ShardedOptimizer, CheckpointsReshardOnLoadAndStayOnTheReferenceCurve) {
  const std::string reference = reference_run();
  const auto expected = read_jsonl(reference + "/metrics.jsonl");
  auto follows_reference = [&](const std::string& dir) {
    const auto resumed = read_jsonl(dir + "/metrics.jsonl");
    ASSERT_EQ(resumed.size(), expected.size());
    for (size_t i = 8; i < expected.size(); ++i)
      EXPECT_NEAR(expected[i]["loss"].get<double>(), resumed[i]["loss"].get<double>(), 1e-4) << dir << " step " << i;
  };
  // Sharded over two ranks, resumed by one process without sharding.
  const std::string down = fresh_dir("zero-to-single");
  auto first = keel_train(down, "--nproc 2 --set parallel.dp=2 --set train.batch_size=8 --set train.stop_at=8 " +
                                    kSharded + common_args());
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto second = keel_train(down, "--set train.batch_size=16 --resume " + common_args());
  ASSERT_EQ(second.exit_code, 0) << second.output;
  follows_reference(down);
  // One process without sharding, resumed sharded over two ranks.
  const std::string up = fresh_dir("zero-from-single");
  auto third = keel_train(up, "--set train.batch_size=16 --set train.stop_at=8 " + common_args());
  ASSERT_EQ(third.exit_code, 0) << third.output;
  auto fourth = keel_train(up, "--nproc 2 --set parallel.dp=2 --set train.batch_size=8 --resume " + kSharded +
                                   common_args());
  ASSERT_EQ(fourth.exit_code, 0) << fourth.output;
  follows_reference(up);
  // The sharded run's checkpoint has the unsharded run's tensors, same names and shapes.
  checkpoint::SafetensorsFile sharded(down + "/checkpoints/step_00000008/optimizer.safetensors");
  checkpoint::SafetensorsFile whole(up + "/checkpoints/step_00000008/optimizer.safetensors");
  EXPECT_EQ(sharded.names(), whole.names());
  for (const auto& name : whole.names()) EXPECT_EQ(sharded.view(name).shape, whole.view(name).shape) << name;
}

TEST(ShardedOptimizer, InjectedSpikeIsRolledBackWithTheEventsOfOneProcess) {
  const std::string args = "--set train.steps=80 --set diagnostics.every=0 --set checkpoint.every=10 "
                           "--set train.eval_every=40 --set debug.inject_lr_spike_at=50 "
                           "--set debug.inject_lr_spike_factor=300 --set debug.inject_lr_spike_steps=3 "
                           "--set stability.sustained_tokens=0 --set stability.sustained_steps=20 "
                           "--set stability.guard_steps=25 ";
  const std::string single = fresh_dir("zero-spike-single");
  auto a = keel_train(single, args + "--set train.batch_size=16");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const auto expected = read_jsonl(single + "/events.jsonl");
  bool rolled_back = false;
  for (const auto& e : expected) rolled_back = rolled_back || e["action"] == "rollback";
  ASSERT_TRUE(rolled_back) << "the injected spike did not cause a rollback in one process\n" << a.output;
  const auto sa = read_jsonl(single + "/metrics.jsonl");
  for (const std::string& sharding : {kSharded, kShardedGradients}) {
    const std::string dir = fresh_dir("zero-spike-dp2");
    auto r = keel_train(dir, "--nproc 2 --set parallel.dp=2 --set train.batch_size=8 " + sharding + args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto events = read_jsonl(dir + "/events.jsonl");
    ASSERT_EQ(events.size(), expected.size()) << sharding << "\n" << r.output;
    for (size_t i = 0; i < events.size(); ++i)
      for (const char* key : {"kind", "action", "step", "checkpoint_step"})
        EXPECT_EQ(events[i].value(key, nlohmann::json()), expected[i].value(key, nlohmann::json()))
            << key << " of event " << i << " (" << sharding << ")";
    const auto sb = read_jsonl(dir + "/metrics.jsonl");
    ASSERT_EQ(sb.size(), sa.size()) << sharding;
    for (size_t i = 0; i < sa.size(); ++i)
      EXPECT_NEAR(sa[i]["loss"].get<double>(), sb[i]["loss"].get<double>(), 1e-3 * sa[i]["loss"].get<double>())
          << i << " (" << sharding << ")";
  }
}

}  // namespace
}  // namespace keel
