// What `keel train`, `keel runs` and `keel compare` say about the same runs (issue 27 item 3),
// through the real binaries: one throughput figure everywhere (metrics/throughput.h), one rollback
// counted once though three detectors called for it, the run's step count with replays apart, the
// rollback target in the terminal, no resume line after a completed run (and a resume of it says
// it is complete instead of overwriting its record), no "0 tokens/s" for a run too short to time.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <sstream>

#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

// The cells of the row of `run` in a table printed by keel runs/compare, by the header's names.
std::map<std::string, std::string> table_row(const std::string& output, const std::string& run) {
  std::istringstream lines(output);
  std::string line;
  std::vector<std::string> header;
  while (std::getline(lines, line)) {
    std::istringstream cells(line);
    std::vector<std::string> row;
    for (std::string cell; cells >> cell;) row.push_back(cell);
    if (row.empty()) continue;
    if (row[0] == "run") header = row;  // one-word column names only are looked up below
    if (row[0] == run && !header.empty()) {
      std::map<std::string, std::string> named;
      // Multi-word headers ("final val") shift names; match from the right for the numeric tail.
      for (size_t i = 0; i < row.size(); ++i) named["#" + std::to_string(i)] = row[i];
      for (size_t i = 1; i <= std::min(row.size(), header.size()); ++i)
        named[header[header.size() - i]] = row[row.size() - i];
      return named;
    }
  }
  return {};
}

double summary_throughput(const std::string& output) {
  const auto at = output.find("\nthroughput ");
  return at == std::string::npos ? NAN : std::atof(output.c_str() + at + 12);
}

class SummaryE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // ctest runs each test of this suite as its own process, concurrently: each process trains
    // into its own folder (one shared folder was emptied by one process under another's runs).
    root_ = fresh_dir("summary_e2e-" + std::to_string(::getpid()));
    shell("mkdir -p '" + root_ + "'");
    const std::string common = "--set run.runs_root=" + root_ + " ";
    // An LR spike that three detectors see at step 71, rolled back to checkpoint 70.
    faulty_ = keel_train(root_ + "/faulty", common + "--set train.steps=120 --set checkpoint.every=10 "
                                                     "--set debug.inject_lr_spike_at=70 --set debug.inject_lr_spike_factor=300 "
                                                     "--set debug.inject_lr_spike_steps=3 --set train.lr=2.5e-3");
    short_ = keel_train(root_ + "/short", common + "--set train.steps=2");
  }
  static std::string root_;
  static ProcessResult faulty_, short_;
};
std::string SummaryE2E::root_;
ProcessResult SummaryE2E::faulty_, SummaryE2E::short_;

TEST_F(SummaryE2E, TrainRunsAndCompareTellTheSameTruth) {
  ASSERT_EQ(faulty_.exit_code, 0) << faulty_.output;
  EXPECT_NE(faulty_.output.find("rolled back to checkpoint step 70 after step 71"), std::string::npos)
      << "the terminal names the rollback target:\n" << faulty_.output;
  EXPECT_EQ(faulty_.output.find("resume with"), std::string::npos) << "completed: nothing to resume";
  EXPECT_NE(faulty_.output.find("train longer:"), std::string::npos) << faulty_.output;

  const double printed = summary_throughput(faulty_.output);
  ASSERT_TRUE(std::isfinite(printed) && printed > 0) << faulty_.output;
  const auto info = nlohmann::json::parse(read_bytes(root_ + "/faulty/run_info.json"));
  EXPECT_NEAR(info["tokens_per_second"].get<double>(), printed, 0.51);

  const auto runs = run_process(keel_binary() + " runs --root " + root_);
  ASSERT_EQ(runs.exit_code, 0) << runs.output;
  EXPECT_NEAR(std::atof(table_row(runs.output, "faulty")["tokens/s"].c_str()), printed, 1.0) << runs.output;

  const auto compare = run_process(keel_binary() + " compare " + root_ + "/faulty");
  ASSERT_EQ(compare.exit_code, 0) << compare.output;
  auto row = table_row(compare.output, "faulty");
  EXPECT_NEAR(std::atof(row["tokens/s"].c_str()), printed, 1.0) << compare.output;
  EXPECT_EQ(row["rollbacks"], "1") << "three detector events, one rollback:\n" << compare.output;
  EXPECT_EQ(row["#2"], "120") << "steps: the run's 120, not its executed records:\n" << compare.output;
  // Checkpoint 70 holds steps 0..69: step 70 ran again; 71, which spiked, was never completed.
  EXPECT_EQ(row["#3"], "1") << "replayed steps, apart:\n" << compare.output;
}

TEST_F(SummaryE2E, ResumingACompletedRunSaysSoAndKeepsItsRecord) {
  ASSERT_EQ(faulty_.exit_code, 0) << faulty_.output;
  const std::string before = read_bytes(root_ + "/faulty/run_info.json");
  const auto resumed = run_process(keel_binary() + " train --resume --run-dir " + root_ + "/faulty");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("is already complete at step 120"), std::string::npos) << resumed.output;
  EXPECT_EQ(resumed.output.find("tokens/s"), std::string::npos) << resumed.output;
  EXPECT_EQ(read_bytes(root_ + "/faulty/run_info.json"), before);
}

TEST_F(SummaryE2E, ARunTooShortToTimeSaysSoInsteadOfZero) {
  ASSERT_EQ(short_.exit_code, 0) << short_.output;
  EXPECT_EQ(short_.output.find("throughput 0 tokens/s"), std::string::npos) << short_.output;
  EXPECT_NE(short_.output.find("throughput not measured"), std::string::npos) << short_.output;
  const auto runs = run_process(keel_binary() + " runs --root " + root_);
  EXPECT_EQ(table_row(runs.output, "short")["tokens/s"], "-") << runs.output;

  // --heatmap on it tells the real diagnostics.every (100), not 0.
  const auto heatmap = run_process(keel_binary() + " compare " + root_ + "/short --heatmap " + root_ + "/h.png");
  EXPECT_NE(heatmap.exit_code, 0);
  EXPECT_NE(heatmap.output.find("diagnostics.every = 100, but the run ended after 2 steps"), std::string::npos)
      << heatmap.output;
}

}  // namespace
}  // namespace keel
