// Ctrl-C on `keel train` at a terminal (issue 27 item 2), through the real binaries on a
// pseudo-terminal: the first Ctrl-C finishes the step, saves, marks run_info.json "interrupted",
// prints the resume command and exits 130; a second one stops at once and still marks the run; no
// coordinator or worker outlives `keel train`. In one process and as a local job of two workers.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/exit_codes.h"
#include "tests/cli/pty_process.h"
#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

// keel train on the tiny config for far more steps than the test waits for, logging every step.
std::vector<std::string> train_argv(const std::string& run_dir, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {keel_binary(), "train", tiny_config(), "--run-dir", run_dir,
                                   "--set", "data.dir=" + test_dataset(), "--set", "train.steps=100000",
                                   "--set", "train.log_every=1", "--set", "checkpoint.every=0"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

nlohmann::json run_info(const std::string& run_dir) {
  return nlohmann::json::parse(read_bytes(run_dir + "/run_info.json"));
}

// A model whose CPU step takes about a second, so a second Ctrl-C lands inside a step.
const std::vector<std::string> kSlowSteps = {"--set", "model.d_model=512", "--set", "model.num_layers=4",
                                             "--set", "model.context_length=128", "--set", "train.batch_size=16"};

// The run says how to resume it and its record says interrupted, exit 130; returns the record.
nlohmann::json expect_interrupted_and_resumable(const std::string& output, const std::string& run_dir) {
  EXPECT_NE(output.find("resume with:   " + keel_binary() + " train --resume --run-dir " + run_dir), std::string::npos)
      << output;
  const auto info = run_info(run_dir);
  EXPECT_EQ(info["status"], "interrupted") << info.dump(1);
  EXPECT_EQ(info["exit_code"], kExitInterrupted);
  return info;
}

void expect_first_ctrl_c_saves(const std::string& run_dir, const std::vector<std::string>& extra) {
  PtyProcess keel(train_argv(run_dir, extra));
  ASSERT_TRUE(keel.started());
  ASSERT_TRUE(keel.read_until("step 3/", 300)) << keel.output();
  keel.type("\x03");
  const int code = keel.wait(120);
  EXPECT_EQ(code, kExitInterrupted) << keel.output();
  EXPECT_NE(keel.output().find("Ctrl-C: finishing this step and saving a checkpoint"), std::string::npos)
      << keel.output();
  EXPECT_NE(keel.output().find("INTERRUPTED (exit code 130)"), std::string::npos) << keel.output();
  const auto info = expect_interrupted_and_resumable(keel.output(), run_dir);
  const int64_t step = info["final_step"];
  EXPECT_GE(step, 3);
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08lld", static_cast<long long>(step));
  EXPECT_TRUE(std::filesystem::exists(run_dir + "/checkpoints/" + name)) << "the interrupted step is saved";
  EXPECT_TRUE(wait_until_gone(run_dir, 10).empty()) << "a coordinator or worker outlived keel train";
}

TEST(InterruptE2E, FirstCtrlCFinishesTheStepSavesMarksTheRunAndExits130) {
  const std::string run_dir = fresh_dir("interrupt_once");
  expect_first_ctrl_c_saves(run_dir, {});

  // The resume command it printed continues from the saved step.
  const int64_t saved = run_info(run_dir)["final_step"];
  auto resumed = run_process(keel_binary() + " train --resume --run-dir " + run_dir + " --set train.steps=" +
                             std::to_string(saved + 2) + " --set train.log_every=1");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from " + run_dir + "/checkpoints/"), std::string::npos) << resumed.output;
  EXPECT_EQ(run_info(run_dir)["status"], "completed");
}

TEST(InterruptE2E, LocalJobOfTwoWorkersIsInterruptedTheSameWay) {
  expect_first_ctrl_c_saves(fresh_dir("interrupt_nproc"), {"--nproc", "2", "--set", "parallel.dp=2"});
}

TEST(InterruptE2E, SecondCtrlCStopsAtOnceAndStillMarksTheRun) {
  for (const bool local_job : {false, true}) {
    const std::string run_dir = fresh_dir(local_job ? "interrupt_twice_nproc" : "interrupt_twice");
    std::vector<std::string> extra = kSlowSteps;
    if (local_job) extra.insert(extra.end(), {"--nproc", "2", "--set", "parallel.dp=2"});
    PtyProcess keel(train_argv(run_dir, extra));
    ASSERT_TRUE(keel.started());
    ASSERT_TRUE(keel.read_until("step 1/", 300)) << keel.output();
    keel.type("\x03");
    ASSERT_TRUE(keel.read_until("Ctrl-C again stops at once", 30)) << keel.output();
    keel.type("\x03");
    EXPECT_EQ(keel.wait(30), kExitInterrupted) << keel.output();
    EXPECT_NE(keel.output().find("INTERRUPTED at once by a second Ctrl-C"), std::string::npos) << keel.output();
    const auto info = expect_interrupted_and_resumable(keel.output(), run_dir);
    EXPECT_NE(info["message"].get<std::string>().find("second Ctrl-C"), std::string::npos) << info.dump(1);
    // Stopped inside the step: nothing saved (checkpoint.every = 0).
    EXPECT_FALSE(std::filesystem::exists(run_dir + "/checkpoints/step_00000002")) << keel.output();
    EXPECT_TRUE(wait_until_gone(run_dir, 10).empty())
        << "a coordinator or worker outlived keel train (local job: " << local_job << ")";
  }
}

}  // namespace
}  // namespace keel
