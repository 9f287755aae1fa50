// End-to-end training through the real `keel` binary on the CPU: loss falls, bit-exact resume,
// damaged checkpoints are refused and the previous one used, bad configs and shards are refused,
// a resume with another model shape is refused naming the keys.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

TEST(Training, LossFallsWellBelowItsStart) {
  const std::string dir = fresh_dir("loss_falls");
  auto r = keel_train(dir, "--set train.steps=150");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto records = read_jsonl(dir + "/metrics.jsonl");
  ASSERT_EQ(records.size(), 150u);
  double first = records.front()["loss"].get<double>();
  double last = 0;
  for (size_t i = records.size() - 5; i < records.size(); ++i) last += records[i]["loss"].get<double>() / 5;
  EXPECT_NEAR(first, std::log(1024.0), 0.5);
  // From ln(V) to well below it: uniform guessing (6.93) -> the unigram level of the shuffled test
  // data (entropy 5.97); the tiny model is at ~6.0 after 150 steps (2026-12-04, seeds 2, 3, 4, 5 and 7).
  EXPECT_LT(last, first - 0.8) << "first " << first << " last " << last;
  for (const char* key : {"step", "loss", "grad_norm", "lr", "tokens_per_second"})
    EXPECT_TRUE(records[3].contains(key)) << key;
  EXPECT_TRUE(records.back().contains("val_loss"));
  // Where each step's time went (device/phase_clock.h): the four phases in the host clock, inside
  // the step's own wall time; no device clock on the CPU.
  for (size_t i : {size_t{3}, records.size() - 2}) {
    const auto& phases = records[i]["host_phase_ms"];
    double sum = 0;
    for (const char* phase : {"forward_backward", "reduce", "signals", "update"}) {
      ASSERT_TRUE(phases.contains(phase)) << i << " " << phases.dump();
      EXPECT_GE(phases[phase].get<double>(), 0.0) << phase;
      sum += phases[phase].get<double>();
    }
    EXPECT_GT(phases["forward_backward"].get<double>(), 0.0);
    EXPECT_LE(sum, 1000.0 * records[i]["step_time"].get<double>() + 1.0) << phases.dump();
    EXPECT_FALSE(records[i].contains("device_phase_ms"));
  }
  EXPECT_NE(r.output.find("final val loss"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("keel train --resume --run-dir " + dir), std::string::npos) << r.output;
  EXPECT_TRUE(std::ifstream(dir + "/config.yaml").good());
}

TEST(Training, ResumeIsBitIdenticalToAnUninterruptedRun) {
  const std::string straight = fresh_dir("resume_straight"), split = fresh_dir("resume_split");
  // A checkpoint every 2 steps, 3 kept: retention prunes before and after the resume.
  auto a = keel_train(straight, "--set train.steps=20 --set checkpoint.every=2");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  auto b1 = keel_train(split, "--set train.steps=20 --set checkpoint.every=2 --set train.stop_at=10");
  ASSERT_EQ(b1.exit_code, 0) << b1.output;
  EXPECT_EQ(read_jsonl(split + "/metrics.jsonl").size(), 10u);
  auto b2 = keel_train(split, "--set train.steps=20 --set checkpoint.every=2 --resume");
  ASSERT_EQ(b2.exit_code, 0) << b2.output;
  auto ra = read_jsonl(straight + "/metrics.jsonl"), rb = read_jsonl(split + "/metrics.jsonl");
  ASSERT_EQ(ra.size(), 20u);
  ASSERT_EQ(rb.size(), 20u);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(ra[i]["loss"].get<double>(), rb[i]["loss"].get<double>()) << "step " << i;
    EXPECT_EQ(ra[i]["grad_norm"].get<double>(), rb[i]["grad_norm"].get<double>()) << "step " << i;
    // The monitor judges the same signals: the first step after the resume included.
    EXPECT_EQ(ra[i].value("update_ratio", -1.0), rb[i].value("update_ratio", -1.0)) << "step " << i;
  }
  // Final weights, optimizer moments and trainer state (the monitor's included: the checkpoints
  // it knows of, after the retention that followed the resumed-from checkpoint): byte-identical.
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "trainer_state.json"}) {
    auto fa = read_bytes(straight + "/checkpoints/step_00000020/" + file);
    auto fb = read_bytes(split + "/checkpoints/step_00000020/" + file);
    ASSERT_FALSE(fa.empty()) << file;
    EXPECT_TRUE(fa == fb) << file << " differs";
  }
}

// The modern recipes of configs/ (qk-norm, qk-norm-zloss, rms-rope) at the tiny shape: they train,
// z_loss is logged where train.z_loss is set, and a stopped-and-resumed rms-rope run (rotary, RMSNorm,
// SwiGLU without biases, the WSD schedule) is bit-identical to a straight one.
TEST(Training, ModernRecipesTrainLogTheirZLossAndResumeExactly) {
  const std::string shape =
      " --set model.vocab_size=1024 --set model.d_model=64 --set model.num_layers=2 --set model.num_heads=2"
      " --set model.context_length=32 --set train.batch_size=8 --set train.steps=8 --set train.warmup_steps=2"
      " --set train.eval_every=4 --set train.eval_batches=2 --set checkpoint.every=2 --set data.vocab_size=1024"
      " --set data.auto_prepare=false --set train.threads=1 --set diagnostics.every=4 --set metrics.port=-1"
      " --set metrics.linger_seconds=0 --set data.dir=" + test_dataset();
  for (const std::string recipe : {"qk-norm", "qk-norm-zloss", "rms-rope"}) {
    const std::string config = std::string(KEEL_SOURCE_DIR) + "/configs/" + recipe + ".yaml";
    const std::string straight = fresh_dir("modern-" + recipe);
    auto r = run_process(keel_binary() + " train " + config + " --run-dir " + straight + shape);
    ASSERT_EQ(r.exit_code, 0) << recipe << "\n" << r.output;
    const auto rows = read_jsonl(straight + "/metrics.jsonl");
    ASSERT_EQ(rows.size(), 8u) << recipe;
    EXPECT_LT(rows.back()["loss"].get<double>(), rows.front()["loss"].get<double>()) << recipe;
    for (const auto& row : rows) {
      EXPECT_EQ(row.contains("z_loss"), recipe == "qk-norm-zloss") << recipe;
      if (row.contains("z_loss")) EXPECT_GT(row["z_loss"].get<double>(), 1.0);  // log(1024)^2 ~ 48 at the start
    }
    if (recipe != "rms-rope") continue;
    const std::string split = fresh_dir("modern-rms-rope-split");
    auto a = run_process(keel_binary() + " train " + config + " --run-dir " + split + shape + " --set train.stop_at=4");
    ASSERT_EQ(a.exit_code, 0) << a.output;
    auto b = run_process(keel_binary() + " train " + config + " --run-dir " + split + shape + " --resume");
    ASSERT_EQ(b.exit_code, 0) << b.output;
    const auto resumed = read_jsonl(split + "/metrics.jsonl");
    ASSERT_EQ(resumed.size(), rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(rows[i]["loss"].get<double>(), resumed[i]["loss"].get<double>()) << "step " << i;
      EXPECT_EQ(rows[i]["lr"].get<double>(), resumed[i]["lr"].get<double>()) << "step " << i;
    }
  }
}

void damage(const std::string& path, bool truncate) {
  std::string bytes = read_bytes(path);
  ASSERT_GT(bytes.size(), 100u);
  if (truncate) {
    bytes.resize(bytes.size() / 2);
  } else {
    bytes[bytes.size() / 2] ^= 0x01;
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

class DamagedCheckpoint : public ::testing::TestWithParam<bool> {};

TEST_P(DamagedCheckpoint, IsRefusedAndThePreviousOneUsed) {
  const bool truncate = GetParam();
  const std::string dir = fresh_dir(truncate ? "truncated_ckpt" : "flipped_ckpt");
  auto r1 = keel_train(dir, "--set train.steps=30 --set train.stop_at=20");
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  damage(dir + "/checkpoints/step_00000020/model.safetensors", truncate);
  auto r2 = keel_train(dir, "--set train.steps=30 --resume");
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  EXPECT_NE(r2.output.find("skipping damaged checkpoint"), std::string::npos) << r2.output;
  EXPECT_NE(r2.output.find("at step 10"), std::string::npos) << r2.output;
  auto records = read_jsonl(dir + "/metrics.jsonl");
  ASSERT_EQ(records.size(), 30u);
  EXPECT_EQ(records[10]["step"].get<int64_t>(), 10);
}

INSTANTIATE_TEST_SUITE_P(FlipAndTruncate, DamagedCheckpoint, ::testing::Values(false, true));

TEST(Config, UnknownKeyIsExitCode2NamingIt) {
  auto r = keel_train(fresh_dir("bad_key"), "--set train.stepz=5");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("train.stepz"), std::string::npos) << r.output;
}

TEST(Config, BadValueIsExitCode2NamingIt) {
  auto r = keel_train(fresh_dir("bad_value"), "--set model.activation=tanh");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("model.activation"), std::string::npos) << r.output;
  auto r2 = keel_train(fresh_dir("bad_value2"), "--set train.batch_size=0");
  EXPECT_EQ(r2.exit_code, 2) << r2.output;
  EXPECT_NE(r2.output.find("train.batch_size"), std::string::npos) << r2.output;
}

TEST(Config, BadFileNamesTheFile) {
  const std::string dir = fresh_dir("bad_file");
  shell("mkdir -p " + dir);
  std::ofstream(dir + "/bad.yaml") << "model:\n  d_model: [1, 2\n";
  auto r = run_process(keel_binary() + " train " + dir + "/bad.yaml --run-dir " + dir + "/run");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("bad.yaml"), std::string::npos) << r.output;
}

TEST(Data, BadShardHeaderIsAClearError) {
  const std::string dir = fresh_dir("bad_shard");
  shell("mkdir -p " + dir + "/data && cp " + test_dataset() + "/* " + dir + "/data/");
  // Overwrite the magic number of the first training shard.
  {
    std::fstream f(dir + "/data/train_000.bin", std::ios::in | std::ios::out | std::ios::binary);
    int32_t bad = 12345;
    f.write(reinterpret_cast<const char*>(&bad), 4);
  }
  auto r = run_process(keel_binary() + " train " + tiny_config() + " --run-dir " + dir + "/run --set data.dir=" + dir +
                       "/data");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("train_000.bin"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("magic"), std::string::npos) << r.output;
}

TEST(Checkpoint, RefusesToOverwriteARunWithoutResume) {
  const std::string dir = fresh_dir("no_clobber");
  ASSERT_EQ(keel_train(dir, "--set train.steps=10").exit_code, 0);
  auto r = keel_train(dir, "--set train.steps=10");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;
}

TEST(Checkpoint, ResumeWithAnotherModelShapeNamesTheKeysAndExits2) {
  const std::string dir = fresh_dir("changed_shape");
  ASSERT_EQ(keel_train(dir, "--set train.steps=4 --set checkpoint.every=2").exit_code, 0);
  auto r = keel_train(dir, "--set train.steps=6 --resume --set model.d_model=96 --set model.num_layers=3");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("model.d_model: checkpoint 64, now 96"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model.num_layers: checkpoint 2, now 3"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("model.num_heads:"), std::string::npos) << r.output;  // unchanged keys are not named
  // Nothing saved was touched: the run still resumes with its own model.
  auto again = keel_train(dir, "--set train.steps=6 --resume");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("at step 4"), std::string::npos) << again.output;
}

}  // namespace
}  // namespace keel
