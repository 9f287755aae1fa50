// The run registry and `keel compare` on real runs, through the real `keel` binary on the CPU:
// a run with injected faults (a NaN gradient, an LR spike) lands in <runs_root>/registry.sqlite
// with its config, status, events and their evidence, and downsampled step metrics; the registry
// is read back here by Python's sqlite3 module, independently of Keel's own reader. `keel runs`
// lists it, and `keel compare` on it and a clean run prints the table and the differing config
// keys, and draws a PNG of reasonable size with gnuplot.
#include <gtest/gtest.h>

#include <cstdint>

#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

// Runs a Python snippet (the pyenv python3 on PATH has sqlite3) with `database` as sys.argv[1] and
// returns its stdout parsed as JSON.
nlohmann::json query_registry(const std::string& database, const std::string& sql) {
  const std::string script = "import json, sqlite3, sys\n"
                             "db = sqlite3.connect(sys.argv[1])\n"
                             "db.row_factory = sqlite3.Row\n"
                             "print(json.dumps([dict(r) for r in db.execute(sys.argv[2])]))\n";
  auto r = run_process("python3 -c '" + script + "' '" + database + "' \"" + sql + "\"");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output);
}

// Width and height from a PNG's IHDR chunk; (0, 0) when `bytes` is not a PNG.
std::pair<uint32_t, uint32_t> png_size(const std::string& bytes) {
  if (bytes.size() < 24 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return {0, 0};
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
    return v;
  };
  return {be32(16), be32(20)};
}

class RegistryE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fresh_dir("registry_e2e");
    shell("mkdir -p '" + root_ + "'");
    const std::string common = "--set train.steps=120 --set checkpoint.every=10 --set train.eval_every=40 "
                               "--set run.runs_root=" + root_ + " ";
    clean_ = keel_train(root_ + "/clean", common);
    faulty_ = keel_train(root_ + "/faulty", common + "--set debug.inject_nan_grad_at=30 "
                                                     "--set debug.inject_lr_spike_at=70 --set debug.inject_lr_spike_factor=300 "
                                                     "--set debug.inject_lr_spike_steps=3 --set train.lr=2.5e-3");
  }
  static std::string database() { return root_ + "/registry.sqlite"; }

  static std::string root_;
  static ProcessResult clean_, faulty_;
};
std::string RegistryE2E::root_;
ProcessResult RegistryE2E::clean_, RegistryE2E::faulty_;

TEST_F(RegistryE2E, RunsWithInjectedEventsAreRecordedListedAndCompared) {
  ASSERT_EQ(clean_.exit_code, 0) << clean_.output;
  ASSERT_EQ(faulty_.exit_code, 0) << faulty_.output;
  const auto runs = query_registry(database(), "SELECT * FROM runs ORDER BY id");
  ASSERT_EQ(runs.size(), 2u) << runs.dump(1);
  for (const auto& run : runs) {
    EXPECT_EQ(run["status"], "completed") << run.dump(1);
    EXPECT_EQ(run["recipe"], "tiny");
    EXPECT_EQ(run["final_step"], 120);
    EXPECT_GT(run["started_unix"].get<int64_t>(), 1700000000);
    EXPECT_GE(run["ended_unix"].get<int64_t>(), run["started_unix"].get<int64_t>());
    EXPECT_GT(run["tokens_per_second"].get<double>(), 0.0);
    EXPECT_LT(run["final_val_loss"].get<double>(), 6.9) << "below ln(1024): it learned";
    EXPECT_NE(run["config_yaml"].get<std::string>().find("steps: 120"), std::string::npos);
  }
  const std::string faulty_id = runs[1]["id"];
  EXPECT_NE(runs[1]["config_yaml"].get<std::string>().find("inject_nan_grad_at: 30"), std::string::npos);

  // Every event of events.jsonl, with its evidence.
  const auto events = query_registry(database(), "SELECT * FROM events WHERE run_id = '" + faulty_id + "'");
  const auto logged = read_jsonl(root_ + "/faulty/events.jsonl");
  ASSERT_EQ(events.size(), logged.size());
  bool nonfinite = false, spike = false;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i]["kind"], logged[i]["kind"]);
    EXPECT_EQ(events[i]["step"], logged[i]["step"]);
    EXPECT_EQ(events[i]["action"], logged[i]["action"]);
    const auto evidence = nlohmann::json::parse(events[i]["evidence_json"].get<std::string>());
    EXPECT_TRUE(evidence.contains("loss_window") || evidence.contains("loss")) << evidence.dump();
    nonfinite = nonfinite || (events[i]["kind"] == "nonfinite" && events[i]["step"] == 30);
    spike = spike || events[i]["kind"] == "loss_spike" || events[i]["kind"] == "sustained_spike" ||
            events[i]["kind"] == "grad_explosion";
  }
  EXPECT_TRUE(nonfinite) << events.dump(1);
  EXPECT_TRUE(spike) << events.dump(1);
  EXPECT_EQ(query_registry(database(), "SELECT * FROM events WHERE run_id = '" + std::string(runs[0]["id"]) + "'").size(),
            read_jsonl(root_ + "/clean/events.jsonl").size());

  // Downsampled step metrics: every 10th step plus the steps with validation or events, in order.
  const auto metrics = query_registry(database(), "SELECT step, loss, val_loss FROM step_metrics WHERE run_id = '" +
                                                      faulty_id + "' ORDER BY rowid");
  ASSERT_GE(metrics.size(), 12u);
  EXPECT_LT(metrics.size(), 60u) << "not downsampled";
  int with_val = 0;
  for (const auto& m : metrics) with_val += !m["val_loss"].is_null();
  EXPECT_GE(with_val, 3) << "steps 40, 80, 120 carry val loss";
  EXPECT_EQ(metrics.back()["step"], read_jsonl(root_ + "/faulty/metrics.jsonl").back()["step"]) << "the last step is kept";

  // `keel runs` lists both.
  auto listed = run_process(keel_binary() + " runs --root " + root_);
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_NE(listed.output.find("clean"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("faulty"), std::string::npos) << listed.output;

  // `keel compare` on the two.
  const std::string png = root_ + "/compare.png";
  auto r = run_process(keel_binary() + " compare " + root_ + "/clean " + root_ + "/faulty --plot " + png);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* column : {"final val", "best val", "spikes", "skips", "rollbacks", "tokens/s", "wall"})
    EXPECT_NE(r.output.find(column), std::string::npos) << column << "\n" << r.output;
  // The config keys in which they differ, with each run's value.
  EXPECT_NE(r.output.find("debug.inject_nan_grad_at"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("train.lr"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("train.steps "), std::string::npos) << "identical keys are not listed\n" << r.output;
  const std::string bytes = read_bytes(png);
  const auto [width, height] = png_size(bytes);
  EXPECT_GE(width, 640u) << r.output;
  EXPECT_GE(height, 400u);
  EXPECT_GT(bytes.size(), 10u * 1024) << "a picture with curves, not an empty canvas";
  EXPECT_LT(bytes.size(), 5u * 1024 * 1024);
}

}  // namespace
}  // namespace keel
