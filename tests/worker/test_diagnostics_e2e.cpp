// Model diagnostics during training, through the real `keel` binary: they appear in metrics.jsonl
// under names containing entropy, linearity and sparsity, and leave training bit-identical.
// `keel diagnose` on a checkpoint of a short tiny run: on the validation probe it reproduces the
// diag.* values training logged at that step; on a text file it tokenizes with the run's
// tokenizer; it prints the per-layer table and writes the heat map and the JSON report.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

TEST(DiagnosticsE2E, MetricsAppearAndTrainingIsBitIdenticalWithThemOn) {
  const std::string on = fresh_dir("diagnostics_on"), off = fresh_dir("diagnostics_off");
  auto a = keel_train(on, "--set train.steps=20 --set diagnostics.every=5 --set model.dropout=0.1");
  auto b = keel_train(off, "--set train.steps=20 --set diagnostics.every=0 --set model.dropout=0.1");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_EQ(b.exit_code, 0) << b.output;
  auto ra = read_jsonl(on + "/metrics.jsonl"), rb = read_jsonl(off + "/metrics.jsonl");
  ASSERT_EQ(ra.size(), 20u);
  ASSERT_EQ(rb.size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(ra[i]["loss"].get<double>(), rb[i]["loss"].get<double>()) << i;
  EXPECT_TRUE(read_bytes(on + "/checkpoints/step_00000020/model.safetensors") ==
              read_bytes(off + "/checkpoints/step_00000020/model.safetensors"));
  // Steps 5, 10, 15, 20 (records 4, 9, 14, 19) carry the diagnostics; others do not.
  for (const char* word : {"entropy", "linearity", "sparsity"}) {
    int found = 0;
    for (auto& [key, value] : ra[4].items()) found += key.find(word) != std::string::npos;
    EXPECT_GT(found, 0) << word;
  }
  EXPECT_TRUE(ra[4].contains("diag.layer0.head0.attention_entropy")) << ra[4].dump();
  EXPECT_FALSE(ra[5].contains("diag.layer0.linearity"));
  EXPECT_FALSE(rb[4].contains("diag.layer0.linearity"));
}

ProcessResult keel_diagnose(const std::string& args) { return run_process(keel_binary() + " diagnose " + args); }

// Compares every diag.* value of `logged` (a metrics.jsonl record) with `report`'s "flat" map.
void expect_same_diagnostics(const nlohmann::json& logged, const nlohmann::json& report) {
  size_t compared = 0;
  for (auto& [key, value] : logged.items()) {
    if (key.rfind("diag.", 0) != 0) continue;
    ASSERT_TRUE(report["flat"].contains(key)) << key;
    const double x = value.get<double>(), y = report["flat"][key].get<double>();
    EXPECT_NEAR(x, y, 1e-9 * std::max(1.0, std::abs(x))) << key;
    ++compared;
  }
  EXPECT_EQ(compared, report["flat"].size());
  EXPECT_GT(compared, 20u);
}

TEST(DiagnoseCommand, CheckpointOnTheValidationProbeMatchesWhatTrainingLogged) {
  const std::string run = fresh_dir("diagnose_run");
  auto r = keel_train(run, "--set train.steps=20 --set diagnostics.every=10 --set checkpoint.every=10");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto records = read_jsonl(run + "/metrics.jsonl");
  ASSERT_EQ(records.size(), 20u);

  // The run directory: its newest checkpoint (step 20).
  const std::string json = run + "/diagnose.json", png = run + "/diagnose.png";
  auto d = keel_diagnose(run + " --json " + json + " --heatmap " + png);
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_NE(d.output.find("step_00000020 (step 20"), std::string::npos) << d.output;
  EXPECT_NE(d.output.find("probe: 4 x 32 tokens, first validation batch"), std::string::npos) << d.output;
  EXPECT_NE(d.output.find("per layer:"), std::string::npos) << d.output;
  EXPECT_NE(d.output.find("lin. w/o resid."), std::string::npos) << d.output;
  EXPECT_NE(d.output.find("normalised attention entropy per head:"), std::string::npos) << d.output;
  auto report = nlohmann::json::parse(read_bytes(json));
  EXPECT_EQ(report["step"].get<int>(), 20);
  ASSERT_EQ(report["layers"].size(), 2u);
  expect_same_diagnostics(records[19], report);
  const std::string image = read_bytes(png);
  ASSERT_GT(image.size(), 1000u);
  EXPECT_EQ(image.substr(1, 3), "PNG");

  // An older checkpoint folder named directly: the values logged at step 10.
  auto d10 = keel_diagnose(run + "/checkpoints/step_00000010 --json " + run + "/d10.json");
  ASSERT_EQ(d10.exit_code, 0) << d10.output;
  expect_same_diagnostics(records[9], nlohmann::json::parse(read_bytes(run + "/d10.json")));
}

TEST(DiagnoseCommand, TextFileIsTokenizedWithTheRunsTokenizer) {
  const std::string run = fresh_dir("diagnose_text");
  auto r = keel_train(run, "--set train.steps=10 --set diagnostics.every=0 --set checkpoint.every=10");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string text = std::string(KEEL_SOURCE_DIR) + "/README.md";  // thousands of tokens
  auto d = keel_diagnose(run + " --text " + text + " --batch 3 --seq-len 16 --json " + run + "/text.json");
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_NE(d.output.find("probe: 3 x 16 tokens, " + text), std::string::npos) << d.output;
  auto report = nlohmann::json::parse(read_bytes(run + "/text.json"));
  EXPECT_EQ(report["probe"]["batch"].get<int>(), 3);
  EXPECT_EQ(report["probe"]["seq_len"].get<int>(), 16);
  for (const auto& layer : report["layers"])
    for (const auto& e : layer["attention_normalised_entropy"]) {
      EXPECT_GE(e.get<double>(), 0.0);
      EXPECT_LE(e.get<double>(), 1.0 + 1e-9);
    }
  // A short text gives one shorter window.
  const std::string short_text = run + "/short.txt";
  shell("printf 'The cat sat on the mat.' > " + short_text);
  auto s = keel_diagnose(run + " --text " + short_text);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_NE(s.output.find("probe: 1 x "), std::string::npos) << s.output;
  // Issue 27 item 5: 7 or so tokens against a width of 64: the linearity fit is exact, and it says so.
  EXPECT_NE(s.output.find("not more than the model width 64 + 1: the least-squares fit behind linearity is then exact"),
            std::string::npos)
      << s.output;
  EXPECT_NE(d.output.find("the probe has 48 tokens, not more than the model width 64 + 1"), std::string::npos)
      << d.output;
  auto wide = keel_diagnose(run + " --text " + text + " --batch 8 --seq-len 16");  // 128 tokens
  ASSERT_EQ(wide.exit_code, 0) << wide.output;
  EXPECT_EQ(wide.output.find("linearity is then exact"), std::string::npos) << wide.output;

  // Errors name the problem.
  auto missing = keel_diagnose(run + " --text " + run + "/no-such.txt");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("no-such.txt"), std::string::npos) << missing.output;
  auto no_checkpoint = keel_diagnose(fresh_dir("diagnose_empty_dir") + " ");
  EXPECT_NE(no_checkpoint.exit_code, 0);
}

}  // namespace
}  // namespace keel
