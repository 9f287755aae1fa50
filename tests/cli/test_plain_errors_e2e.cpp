// What a new user reads when something is off (issue 27 item 4), through the real `keel` binary:
// errors without source paths unless --debug, CLI11's parse errors with the arguments in the order
// typed, "did you mean" for config keys, `keel --version`, `keel runs` before any run, and config
// values in `keel compare` as typed (0.003, not 0.0030000000000000001).
#include <gtest/gtest.h>

#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

TEST(PlainErrorsE2E, ErrorsHaveNoSourcePathUnlessDebug) {
  const auto plain = run_process(keel_binary() + " compare /no/such/run");
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_NE(plain.output.find("'/no/such/run' is not a run directory"), std::string::npos) << plain.output;
  EXPECT_EQ(plain.output.find(".cpp:"), std::string::npos) << plain.output;
  const auto debug = run_process(keel_binary() + " --debug compare /no/such/run");
  EXPECT_NE(debug.output.find("compare_command.cpp:"), std::string::npos) << debug.output;
}

TEST(PlainErrorsE2E, MistypedFlagIsReportedInTheOrderTyped) {
  const auto r = run_process(keel_binary() + " train " + tiny_config() + " --stes 10");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("not expected: --stes 10"), std::string::npos) << r.output;
}

TEST(PlainErrorsE2E, MistypedConfigKeySuggestsTheKey) {
  const auto r = run_process(keel_binary() + " train " + tiny_config() + " --set train.setps=3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unknown config key 'train.setps' (did you mean 'train.steps'?)"), std::string::npos)
      << r.output;
}

TEST(PlainErrorsE2E, VersionNamesTheBuild) {
  const auto r = run_process(keel_binary() + " --version");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* line : {"keel ", "git commit: ", "LibTorch: ", "CUDA kernels and NCCL backend: "})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  EXPECT_EQ(r.output.find("git commit: unknown"), std::string::npos) << "built from a git checkout";
}

TEST(PlainErrorsE2E, RunsBeforeTheFirstRunIsNotAnError) {
  const std::string root = fresh_dir("plain_errors_no_runs");
  const auto r = run_process(keel_binary() + " runs --root " + root);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("no runs yet"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("error:"), std::string::npos) << r.output;
}

TEST(PlainErrorsE2E, CompareShowsConfigValuesAsTyped) {
  const std::string root = fresh_dir("plain_errors_compare");
  for (const char* lr : {"0.003", "0.001"}) {
    const auto r = keel_train(root + "/lr" + lr, std::string("--set train.steps=1 --set train.lr=") + lr +
                                                     " --set run.runs_root=" + root);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const auto r = run_process(keel_binary() + " compare " + root + "/lr0.003 " + root + "/lr0.001");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train.lr"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" 0.003 "), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("0.0030000"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("0.0010000"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace keel
