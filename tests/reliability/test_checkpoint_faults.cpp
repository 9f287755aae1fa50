// A crash or a full disk in the middle of writing a checkpoint, with the real `keel train` (one
// process, CPU), through the fault injection of common/fs.h (DurableFile):
//   - KEEL_INJECT_WRITE_ERROR: the write of step 30's model file fails halfway with ENOSPC. The run
//     ends with a clear error (exit 1), no partial file or temporary folder stays behind, the
//     previous checkpoints verify, and --resume uses step 20 and ends bit-identical to an
//     uninterrupted run;
//   - KEEL_INJECT_CRASH_IN_WRITE: the process is SIGKILLed halfway through that write. The torn
//     temporary folder is never taken for a checkpoint; --resume removes it, uses step 20 and ends
//     bit-identical.
#include <gtest/gtest.h>

#include "checkpoint/checkpoint_store.h"
#include "tests/reliability/reliability_util.h"

namespace keel::reliability {
namespace {

const std::string kSingleArgs = KEEL_RELIABILITY_SINGLE_ARGS;
constexpr int kSingleSteps = KEEL_RELIABILITY_SINGLE_STEPS;

std::string reference() { return std::string(KEEL_BINARY_DIR) + "/test-runs/reliability-reference-single"; }

std::vector<std::string> temporaries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& name : fs::list_dir(dir + "/checkpoints"))
    if (name.rfind(".tmp-", 0) == 0) names.push_back(name);
  return names;
}

TEST(CheckpointFaults, DiskFullDuringSaveKeepsThePreviousCheckpointAndResumesBitExact) {
  const std::string dir = fresh_dir("reliability-disk-full"), log = dir + ".log";
  const int code = wait_exit(start_keel(dir, kSingleArgs, log, "KEEL_INJECT_WRITE_ERROR=step_00000030"));
  const std::string output = read_bytes(log);
  EXPECT_EQ(code, 1) << output;
  EXPECT_NE(output.find("No space left on device"), std::string::npos) << output;
  EXPECT_NE(output.find("model.safetensors"), std::string::npos) << output;
  checkpoint::CheckpointStore store(dir + "/checkpoints");
  EXPECT_EQ(store.list_steps(), (std::vector<int64_t>{10, 20}));
  EXPECT_TRUE(temporaries(dir).empty()) << "a partial save was left behind";
  EXPECT_EQ(store.latest_valid().value_or(-1), 20);

  auto r = keel_train(dir, kSingleArgs + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + step_dir(dir, 20)), std::string::npos) << r.output;
  expect_bit_exact(reference(), dir, kSingleSteps);
}

TEST(CheckpointFaults, CrashDuringSaveKeepsThePreviousCheckpointAndResumesBitExact) {
  const std::string dir = fresh_dir("reliability-crash-in-save"), log = dir + ".log";
  const int code = wait_exit(start_keel(dir, kSingleArgs, log, "KEEL_INJECT_CRASH_IN_WRITE=step_00000030"));
  const std::string output = read_bytes(log);
  EXPECT_EQ(code, 128 + SIGKILL) << output;
  checkpoint::CheckpointStore store(dir + "/checkpoints");
  EXPECT_EQ(store.list_steps(), (std::vector<int64_t>{10, 20}));
  ASSERT_EQ(temporaries(dir).size(), 1u) << "the torn save of step 30";
  EXPECT_EQ(store.latest_valid().value_or(-1), 20);

  auto r = keel_train(dir, kSingleArgs + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + step_dir(dir, 20)), std::string::npos) << r.output;
  EXPECT_TRUE(temporaries(dir).empty()) << "the torn save was not cleaned up";
  expect_bit_exact(reference(), dir, kSingleSteps);
}

}  // namespace
}  // namespace keel::reliability
