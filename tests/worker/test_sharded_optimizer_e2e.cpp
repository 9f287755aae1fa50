// The sharded optimizer (ZeRO-1, parallel.shard_optimizer) end to end on the CPU with real
// processes (`keel train --nproc N`: a real coordinator and mpirun ranks, MPI collectives): one
// process sharded is bit-identical to unsharded; DP=2 and DP=2 x TP=2 match one process on the
// doubled batch (losses, grad norms, final weights); each DP rank writes its own optimizer file (half
// the moments, committed and listed in the manifest); stop + resume is bit-identical, per-rank files
// included; a checkpoint re-shards on load (sharded DP=2 -> one process unsharded, unsharded ->
// sharded DP=2, sharded DP=2 x TP=2 -> one process) and stays on the reference curve; a corrupted or
// missing optimizer shard is refused naming the file; an injected spike is rolled back with the same
// events as one process; each rank reports the moments it holds. The same with the gradients
// reduce-scattered (ZeRO-2): DP=2, DP=2 x TP=2, resume, and an injected NaN gradient skipped as in
// one process.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/manifest.h"
#include "tests/worker/distributed_util.h"
#include "tests/worker/process_util.h"

namespace keel {
namespace {

using namespace keel::testing_util;

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

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
  // The checkpoint: one optimizer file per DP rank, each with its half of the flat moments, no
  // whole-tensor file, all in the manifest. The flat space is every trained parameter of the model
  // file, in the order the shards' metadata lists them.
  const std::string step = dir + "/checkpoints/step_00000024";
  EXPECT_FALSE(file_exists(step + "/optimizer.safetensors"));
  const auto manifest = checkpoint::read_manifest(step);
  SafetensorsFile model(step + "/model.safetensors");
  int64_t flat_size = 0;
  for (const auto& p : nlohmann::json::parse(SafetensorsFile(step + "/optimizer.dp0-of-2.safetensors").metadata().at("params"))) {
    const auto shape = model.view(p.at("name").get<std::string>()).shape;
    EXPECT_EQ(p.at("shape").get<std::vector<int64_t>>(), shape) << p.dump();
    EXPECT_EQ(p.at("offset").get<int64_t>(), flat_size) << p.dump();
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    flat_size += numel;
  }
  EXPECT_NEAR(static_cast<double>(flat_size), 167872.0, 1000.0);  // tiny.yaml's model
  const int64_t half = (flat_size + 1) / 2;
  int64_t begin = 0;
  for (int d = 0; d < 2; ++d) {
    const std::string name = "optimizer.dp" + std::to_string(d) + "-of-2.safetensors";
    SafetensorsFile file(step + "/" + name);
    const int64_t end = std::min(flat_size, begin + half);
    EXPECT_EQ(file.view("exp_avg").shape, std::vector<int64_t>{end - begin}) << name;
    EXPECT_EQ(file.view("exp_avg_sq").shape, std::vector<int64_t>{end - begin}) << name;
    EXPECT_EQ(file.metadata().at("flat_begin"), std::to_string(begin)) << name;
    EXPECT_EQ(file.metadata().at("flat_end"), std::to_string(end)) << name;
    EXPECT_EQ(file.metadata().at("flat_size"), std::to_string(flat_size)) << name;
    begin = end;
    const size_t size = read_bytes(step + "/" + name).size();
    EXPECT_NEAR(static_cast<double>(size), 0.64 * 1024 * 1024, 0.01 * 1024 * 1024) << name;
    bool listed = false;
    for (const auto& f : manifest.files) listed = listed || (f.name == name && f.size == size);
    EXPECT_TRUE(listed) << name << " is not in the manifest with its size";
  }
  const auto trainer = nlohmann::json::parse(read_bytes(step + "/trainer_state.json"));
  EXPECT_EQ(trainer.at("layout").at("optimizer_dp_shards"), 2);
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
  const std::vector<std::string> files = {"model.safetensors", "optimizer.dp0-of-2.safetensors",
                                          "optimizer.dp1-of-2.safetensors"};
  expect_stop_and_resume_identical("zero1", args + kSharded, files);
  expect_stop_and_resume_identical("zero2", args + kShardedGradients, files);
}

// A checkpoint holds whole moments (unsharded) or one flat range per DP rank (sharded over DP);
// either loads into any other world, re-sharded.
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
  // What was re-sharded: the sharded run's per-DP-rank files into whole tensors, and the unsharded
  // run's whole tensors into per-DP-rank ranges (its later checkpoints have per-rank files).
  EXPECT_TRUE(file_exists(down + "/checkpoints/step_00000008/optimizer.dp1-of-2.safetensors"));
  EXPECT_FALSE(file_exists(down + "/checkpoints/step_00000008/optimizer.safetensors"));
  EXPECT_TRUE(file_exists(down + "/checkpoints/step_00000024/optimizer.safetensors"));
  EXPECT_TRUE(file_exists(up + "/checkpoints/step_00000008/optimizer.safetensors"));
  EXPECT_TRUE(file_exists(up + "/checkpoints/step_00000024/optimizer.dp1-of-2.safetensors"));
  // DP=2 x TP=2 sharded (a flat shard per DP rank of each TP rank) resumed by one process unsharded.
  const std::string both = fresh_dir("zero-dp2tp2-to-single");
  auto fifth = keel_train(both, "--nproc 4 --set parallel.dp=2 --set parallel.tp=2 --set train.batch_size=8 "
                                "--set train.stop_at=8 " + kSharded + common_args());
  ASSERT_EQ(fifth.exit_code, 0) << fifth.output;
  for (const char* name : {"optimizer.tp0-of-2.dp0-of-2.safetensors", "optimizer.tp0-of-2.dp1-of-2.safetensors",
                           "optimizer.tp1-of-2.dp0-of-2.safetensors", "optimizer.tp1-of-2.dp1-of-2.safetensors"})
    EXPECT_TRUE(file_exists(both + "/checkpoints/step_00000008/" + name)) << name;
  auto sixth = keel_train(both, "--set train.batch_size=16 --resume " + common_args());
  ASSERT_EQ(sixth.exit_code, 0) << sixth.output;
  follows_reference(both);
}

// A damaged or missing per-DP-rank optimizer file: the checkpoint does not verify, and resuming
// from it is refused with the file's name.
TEST(ShardedOptimizer, CorruptedOrMissingOptimizerShardIsRefusedNamingTheFile) {
  const std::string dir = fresh_dir("zero-damaged");
  const std::string args = "--nproc 2 --set parallel.dp=2 --set train.batch_size=8 " + kSharded + common_args();
  auto first = keel_train(dir, args + " --set train.stop_at=8");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const std::string step = dir + "/checkpoints/step_00000008";
  const std::string shard = step + "/optimizer.dp1-of-2.safetensors";
  ASSERT_TRUE(checkpoint::verify_checkpoint(step).ok);
  // One flipped byte in the moments (past the header).
  std::string bytes = read_bytes(shard);
  ASSERT_GT(bytes.size(), 100000u);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x40);
  write_bytes(shard, bytes);
  const auto damaged = checkpoint::verify_checkpoint(step);
  EXPECT_FALSE(damaged.ok);
  EXPECT_NE(damaged.problem.find("optimizer.dp1-of-2.safetensors: crc32 mismatch"), std::string::npos)
      << damaged.problem;
  auto corrupt = run_process(keel_binary() + " train --nproc 2 --resume-from 8 --run-dir " + dir);
  EXPECT_NE(corrupt.exit_code, 0) << corrupt.output;
  EXPECT_NE(corrupt.output.find("optimizer.dp1-of-2.safetensors: crc32 mismatch"), std::string::npos)
      << corrupt.output;
  std::remove(shard.c_str());
  auto missing = run_process(keel_binary() + " train --nproc 2 --resume-from 8 --run-dir " + dir);
  EXPECT_NE(missing.exit_code, 0) << missing.output;
  EXPECT_NE(missing.output.find("optimizer.dp1-of-2.safetensors: missing"), std::string::npos) << missing.output;
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
