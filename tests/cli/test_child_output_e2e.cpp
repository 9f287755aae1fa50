// What the programs `keel` runs print into its user's terminal (issue 27), through the real
// binaries with their stdout and stderr captured together, as a terminal shows them:
// - keel-tokenize's "N tokens" stays out of `keel generate` / `keel diagnose --text`; its errors do not;
// - the keel-coordinator's "job is RUNNING/COMPLETED" lines of `keel train` go to RUN_DIR/coordinator.log
//   (the terminal with --debug); a coordinator that cannot start still says why on the terminal;
// - keel-coordinator and keel-worker print errors without source file:line unless --debug, and
//   `keel --debug train --nproc N` passes that on.
#include <gtest/gtest.h>

#include <regex>

#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

std::string program(const std::string& name) { return std::string(KEEL_BINARY_DIR) + "/cli/" + name; }

// Whether `output` has a line that is only a token count, as keel-tokenize prints it.
bool has_token_count_line(const std::string& output) {
  return std::regex_search(output, std::regex(R"((^|\n)[0-9]+ tokens\n)"));
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The whole line of `output` that holds `part`, or "".
std::string line_with(const std::string& output, const std::string& part) {
  const size_t at = output.find(part);
  if (at == std::string::npos) return "";
  const size_t begin = output.rfind('\n', at);
  const size_t end = output.find('\n', at);
  const size_t from = begin == std::string::npos ? 0 : begin + 1;
  return output.substr(from, end == std::string::npos ? std::string::npos : end - from);
}

// A three-step run of the tiny model with one checkpoint, in a folder of its own (tests may run at once).
std::string trained_run(const std::string& name) {
  const std::string dir = fresh_dir(name);
  const auto r = keel_train(dir, "--set train.steps=3 --set checkpoint.every=3");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return dir;
}

TEST(ChildOutputE2E, TokenizerCountStaysOutOfGenerateAndDiagnose) {
  const std::string run = trained_run("child_output_tokenize");
  const auto generated = run_process(keel_binary() + " generate " + run + " --prompt 'The cat' --max-tokens 4");
  ASSERT_EQ(generated.exit_code, 0) << generated.output;
  EXPECT_FALSE(has_token_count_line(generated.output)) << generated.output;

  const std::string text = run + "/probe.txt";
  shell("printf 'The cat sat on the mat.' > " + text);
  const auto diagnosed = run_process(keel_binary() + " diagnose " + run + " --text " + text);
  ASSERT_EQ(diagnosed.exit_code, 0) << diagnosed.output;
  EXPECT_TRUE(contains(diagnosed.output, "probe: 1 x ")) << diagnosed.output;
  EXPECT_FALSE(has_token_count_line(diagnosed.output)) << diagnosed.output;

  // Run by hand, keel-tokenize still reports the count: the line above is kept out, not lost.
  const auto by_hand = run_process(program("keel-tokenize") + " " + test_dataset() + " " + text + " " + run + "/probe.bin");
  ASSERT_EQ(by_hand.exit_code, 0) << by_hand.output;
  EXPECT_TRUE(has_token_count_line(by_hand.output)) << by_hand.output;
}

TEST(ChildOutputE2E, TokenizerErrorsStillReachTheUser) {
  // A file that is no tokenizer: keel-tokenize fails, and both it and keel generate say so.
  const auto r = run_process(keel_binary() + " generate " + trained_run("child_output_tokenize_error") + " --prompt 'The cat' --tokenizer " +
                             tiny_config());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, "cannot load tokenizer model")) << r.output;
  EXPECT_TRUE(contains(r.output, "keel-tokenize failed")) << r.output;
}

TEST(ChildOutputE2E, CoordinatorLinesGoToTheRunsLogNotTheTerminal) {
  const std::string run = fresh_dir("child_output_coordinator");
  const auto r = keel_train(run, "--set train.steps=2 --set checkpoint.every=0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "keel-coordinator")) << r.output;
  EXPECT_FALSE(contains(r.output, "job is ")) << r.output;
  const std::string log = read_bytes(run + "/coordinator.log");
  EXPECT_TRUE(contains(log, "keel-coordinator: job 'default' world 1")) << log;
  EXPECT_TRUE(contains(log, "keel-coordinator: job is COMPLETED")) << log;
  EXPECT_TRUE(contains(log, "completed (latest committed step 2)")) << log;

  // --debug asks for them on the terminal.
  const std::string debug_run = fresh_dir("child_output_coordinator_debug");
  const auto d = run_process(keel_binary() + " --debug train " + tiny_config() + " --run-dir " + debug_run +
                             " --set data.dir=" + test_dataset() + " --set train.steps=2 --set checkpoint.every=0");
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_TRUE(contains(d.output, "keel-coordinator: job is COMPLETED")) << d.output;
}

TEST(ChildOutputE2E, CoordinatorThatCannotStartSaysWhyOnTheTerminal) {
  const std::string tls = " --set coordinator.tls_cert=/no/cert.pem --set coordinator.tls_key=/no/key.pem"
                          " --set coordinator.tls_ca=/no/ca.pem";
  const std::string run = fresh_dir("child_output_coordinator_fails");
  const auto r = keel_train(run, "--set train.steps=2" + tls);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "keel-coordinator exited with code 1 before serving")) << r.output;
  EXPECT_TRUE(contains(r.output, "TLS file '/no/cert.pem' does not exist")) << r.output;
  EXPECT_TRUE(contains(r.output, run + "/coordinator.log")) << r.output;
  EXPECT_FALSE(contains(r.output, ".cpp:")) << r.output;
}

TEST(ChildOutputE2E, CoordinatorErrorsHaveNoSourcePathUnlessDebug) {
  const std::string bad_layout = program("keel-coordinator") + " --world-size 2 --dp 3";
  const auto plain = run_process(bad_layout);
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_TRUE(contains(plain.output, "keel-coordinator: error: layout dp=3 x tp=1 = 3 does not match world size 2"))
      << plain.output;
  EXPECT_FALSE(contains(plain.output, ".cpp:")) << plain.output;
  const auto debug = run_process(bad_layout + " --debug");
  EXPECT_TRUE(contains(debug.output, "layout.cpp:")) << debug.output;
}

TEST(ChildOutputE2E, WorkerErrorsHaveNoSourcePathUnlessDebug) {
  // A run directory that cannot be made: the worker fails before it looks for a coordinator.
  const std::string worker = "RANK=0 WORLD_SIZE=1 " + program("keel-worker") + " " + tiny_config() +
                             " --coordinator 127.0.0.1:1 --run-dir /proc/no-such-process/run";
  const auto plain = run_process(worker);
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_TRUE(contains(plain.output, "keel worker: error: cannot create folder")) << plain.output;
  EXPECT_FALSE(contains(plain.output, ".cpp:")) << plain.output;
  const auto debug = run_process(worker + " --debug");
  EXPECT_TRUE(contains(debug.output, "fs.cpp:")) << debug.output;
}

TEST(ChildOutputE2E, DistributedFailureIsPlainUnlessDebugIsPassedOn) {
  // A dataset folder that is not prepared: each rank fails in its data set-up.
  const std::string broken = " --set data.dir=" + fresh_dir("child_output_no_data") + " --set train.steps=2 --nproc 2 "
                             "--set parallel.dp=2";
  const std::string run = fresh_dir("child_output_distributed");
  const auto plain = run_process(keel_binary() + " train " + tiny_config() + " --run-dir " + run + broken);
  EXPECT_NE(plain.exit_code, 0);
  const std::string failed = line_with(plain.output, "] job failed: ");
  EXPECT_TRUE(contains(failed, "has no meta.json")) << plain.output;
  EXPECT_FALSE(contains(failed, ".cpp:")) << failed;
  EXPECT_FALSE(contains(plain.output, "Primary job")) << "mpirun's own block, without --debug\n" << plain.output;
  // A surviving rank that leaves the failed job repeats the other rank's error, plain too.
  const std::string leaving = line_with(plain.output, "the job failed, leaving it: ");
  EXPECT_FALSE(contains(leaving, ".cpp:")) << leaving;
  EXPECT_FALSE(contains(plain.output, "keel-coordinator: job")) << plain.output;
  EXPECT_TRUE(contains(read_bytes(run + "/coordinator.log"), "keel-coordinator: job is FAILED"));

  const std::string debug_run = fresh_dir("child_output_distributed_debug");
  const auto debug = run_process(keel_binary() + " --debug train " + tiny_config() + " --run-dir " + debug_run + broken);
  EXPECT_NE(debug.exit_code, 0);
  EXPECT_TRUE(contains(line_with(debug.output, "] job failed: "), ".cpp:")) << debug.output;
}

}  // namespace
}  // namespace keel
