// Hostile or unlucky input met by the real `keel train` (CPU), each ending promptly with a plain
// message and the right exit code, never a crash or a wait for missed heartbeats:
//   - a training shard truncated while the run reads it (one process, and a DP=2 job): exit 1 (the
//     job: 1 or 4) within seconds with a DataError naming the shard and both sizes, no SIGBUS or
//     crash backtrace, the coordinator told at once; the checkpoints saved before stay complete, resuming on the damaged
//     shard is refused naming it and both sizes, and on the restored shard continues from the last one;
//   - train.eval_batches beyond the validation shards: exit 2 before the first step, naming the key,
//     the tokens the validation shards hold and the largest value that fits; a batch larger than a
//     shard: exit 1 before the first step, naming the shard;
//   - configs with inf/nan numbers, a duplicate key, no content or an alias bomb: exit 2 naming the
//     problem (the bomb within the process's start-up time).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "checkpoint/checkpoint_store.h"
#include "tests/reliability/reliability_util.h"

namespace keel::reliability {
namespace {

// Steps enough that only the fault ends the run; checkpoints often, no evaluation before the end.
const std::string kLongRun =
    "--set train.steps=100000 --set checkpoint.every=5 --set train.eval_every=0 --set diagnostics.every=0";

// A private copy of the test dataset (the fixture's must stay intact for the other tests).
std::string copy_dataset(const std::string& dir) {
  shell("rm -rf '" + dir + "' && mkdir -p '" + dir + "' && cp '" + test_dataset() + "'/* '" + dir + "/'");
  return dir;
}

int64_t file_size(const std::string& path) { return static_cast<int64_t>(read_bytes(path).size()); }

// The exit status of `pid`, or -1 after SIGKILLing it when it runs past `timeout_s`.
int wait_exit_within(pid_t pid, double timeout_s) {
  const auto start = Clock::now();
  while (seconds_since(start) < timeout_s) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

// Every checkpoint listed verifies in full, and the newest is what a resume would take.
std::vector<int64_t> expect_checkpoints_intact(const std::string& run_dir) {
  checkpoint::CheckpointStore store(run_dir + "/checkpoints");
  const auto steps = store.list_steps();
  EXPECT_FALSE(steps.empty()) << "no checkpoint was saved before the fault";
  for (const int64_t step : steps) {
    const auto verified = store.verify(step);
    EXPECT_TRUE(verified.ok) << "step " << step << ": " << verified.problem;
  }
  if (!steps.empty()) EXPECT_EQ(store.latest_valid().value_or(-1), steps.back());
  return steps;
}

// Starts a long run on a copy of the dataset, truncates its training shard to half after step 12,
// and checks how the run ends. Returns the run's output.
std::string truncate_under_a_run(const std::string& name, const std::string& extra, double* seconds_to_exit,
                                 int* exit_code) {
  const std::string dir = fresh_dir(name), log = dir + ".log";
  const std::string data = copy_dataset(dir + "-data"), shard = data + "/train_000.bin";
  const pid_t pid = start_keel(dir, "--set data.dir=" + data + " " + kLongRun + " " + extra, log);
  if (!wait_for_step(dir, 12)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ADD_FAILURE() << "the run never reached step 12: " << read_bytes(log);
    return "";
  }
  const int64_t bytes = file_size(shard);
  const auto cut = Clock::now();
  EXPECT_EQ(::truncate(shard.c_str(), bytes / 2), 0);
  *exit_code = wait_exit_within(pid, 120);
  *seconds_to_exit = seconds_since(cut);
  const std::string output = read_bytes(log);
  EXPECT_NE(output.find("shard '" + shard + "': the file changed on disk while in use: it was " +
                        std::to_string(bytes)),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("is now " + std::to_string(bytes / 2) + " bytes (truncated"), std::string::npos) << output;
  EXPECT_EQ(output.find("fatal signal"), std::string::npos) << output;
  EXPECT_EQ(output.find("backtrace"), std::string::npos) << output;
  // Well before the 30 s heartbeat timeout: the error path, not a missed heartbeat, ended it.
  EXPECT_LT(*seconds_to_exit, 25.0) << output;
  expect_checkpoints_intact(dir);
  return output;
}

TEST(DataFaults, ShardTruncatedUnderARunEndsItWithADataErrorNamingTheShard) {
  double seconds = 0;
  int code = 0;
  const std::string output = truncate_under_a_run("reliability-shard-truncated", "", &seconds, &code);
  EXPECT_EQ(code, 1) << "exit 1 (a DataError), not a SIGBUS (135), a kill or a hang: " << output;
  std::printf("one process: exit 1 %.2f s after the training shard was truncated\n", seconds);

  const std::string dir = std::string(KEEL_BINARY_DIR) + "/test-runs/reliability-shard-truncated";
  const std::string data = dir + "-data", shard = data + "/train_000.bin";
  const auto steps = expect_checkpoints_intact(dir);
  ASSERT_FALSE(steps.empty());
  // The run's record says how it ended, not "running".
  const std::string info = read_bytes(dir + "/run_info.json");
  EXPECT_NE(info.find("\"status\": \"failed\""), std::string::npos) << info;
  EXPECT_NE(info.find("the file changed on disk while in use"), std::string::npos) << info;
  EXPECT_NE(info.find("\"exit_code\": 1"), std::string::npos) << info;
  // Resuming on the damaged shard is refused before anything is read, naming it.
  auto refused = keel_train(dir, "--set data.dir=" + data + " " + kLongRun + " --resume");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("no complete prepared dataset in '" + data + "': shard '" + shard + "' is " +
                                std::to_string(file_size(shard)) + " bytes but meta.json records"),
            std::string::npos)
      << refused.output;
  // On the restored shard the run continues from its last checkpoint: nothing saved was lost.
  copy_dataset(data);
  const int64_t last = steps.back();
  auto resumed = keel_train(dir, "--set data.dir=" + data + " " + kLongRun + " --resume --set train.stop_at=" +
                                     std::to_string(last + 3));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from " + step_dir(dir, static_cast<int>(last))), std::string::npos)
      << resumed.output;
}

TEST(DataFaults, ShardTruncatedUnderADistributedJobFailsTheJobAtOnce) {
  double seconds = 0;
  int code = 0;
  const std::string output =
      truncate_under_a_run("reliability-shard-truncated-dp2", "--nproc 2 --set parallel.dp=2", &seconds, &code);
  // The rank that read the shard first exits 1; a rank the coordinator's verdict reaches first
  // leaves with 4 (the job failed), and the job ends with the code mpirun saw first.
  EXPECT_TRUE(code == 1 || code == 4) << "exit " << code << ", not a SIGBUS (135), a kill or a hang: " << output;
  // The failing rank told the coordinator, which failed the job naming the shard.
  EXPECT_NE(output.find("the coordinator declared the job failed"), std::string::npos) << output;
  EXPECT_NE(output.find("failed: shard '"), std::string::npos) << output;
  std::printf("DP=2 job: exit %d %.2f s after the training shard was truncated\n", code, seconds);
}

TEST(DataFaults, EvalBatchesBeyondTheValidationShardsAreCutToThemWithAWarning) {
  const std::string dir = fresh_dir("reliability-eval-batches");
  const int64_t val_tokens = (file_size(test_dataset() + "/val_000.bin") - 1024) / 2;
  const int64_t fit = (val_tokens - 1) / (8 * 32);  // tiny.yaml: batch 8 x context 32
  const auto start = Clock::now();
  auto r = keel_train(dir, "--set train.steps=1 --set train.eval_batches=1000000000 --set diagnostics.every=0 "
                           "--set checkpoint.save_final=false");
  const double seconds = seconds_since(start);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train.eval_batches = 1000000000 needs 1000000000 batches of 256 tokens"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("hold " + std::to_string(val_tokens) + " tokens: at most train.eval_batches = " +
                          std::to_string(fit) + " fits"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(last_logged_step(dir), 0) << "trained and evaluated its one step";
  std::printf("eval_batches=1e9: cut to %lld batches, one step trained and evaluated in %.2f s\n",
              static_cast<long long>(fit), seconds);

  // One batch larger than the training shard: the loader refuses it before the first step. A
  // small folder of llm.c-layout shards (the test dataset's first 4000 tokens), so the batch that
  // overflows it is small enough for the memory floor (a batch beyond the whole test shard would
  // need ~43 GiB of logits and is refused by that check first, exit 2).
  const std::string small = fresh_dir("reliability-small-shards");
  shell("mkdir -p '" + small + "'");
  const int64_t train_tokens = 4000;
  const std::string head = read_bytes(test_dataset() + "/train_000.bin").substr(1024, 2 * train_tokens);
  for (const char* name : {"/small_train_000.bin", "/small_val_000.bin"}) {
    int32_t header[256] = {20240520, 1, static_cast<int32_t>(train_tokens)};
    std::ofstream out(small + name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(header), sizeof(header));
    out << head;
  }
  const int64_t batch = train_tokens / 32 + 1;
  auto big = keel_train(fresh_dir("reliability-batch-too-big"),
                        "--set data.dir=" + small + " --set train.batch_size=" + std::to_string(batch));
  EXPECT_EQ(big.exit_code, 1) << big.output;
  EXPECT_NE(big.output.find("small_train_000.bin' has " + std::to_string(train_tokens) +
                            " tokens, fewer than one global batch needs"),
            std::string::npos)
      << big.output;
}

TEST(ConfigFaults, KeelTrainRefusesHostileConfigsWithExit2) {
  const std::string dir = fresh_dir("reliability-hostile-configs");
  shell("mkdir -p '" + dir + "'");
  auto refused = [&](const std::string& args, const std::string& expected) {
    auto r = run_process(keel_binary() + " train " + args + " --run-dir " + dir + "/run --set data.dir=" +
                         test_dataset());
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << args << ": " << r.output;
    EXPECT_EQ(r.output.find("step "), std::string::npos) << "trained: " << r.output;
  };
  // The numbers the issue found accepted.
  for (const std::string key : {"train.lr", "train.grad_clip", "coordinator.loss_timeout_seconds"})
    refused(tiny_config() + " --set " + key + "=inf", key + " = 'inf' is not valid: expected a finite number");
  refused(tiny_config() + " --set metrics.linger_seconds=nan",
          "metrics.linger_seconds = 'nan' is not valid: expected a finite number");
  refused(tiny_config() + " --set stability.grad_z_threshold=.inf", "stability.grad_z_threshold = '.inf'");

  std::ofstream(dir + "/duplicate.yaml") << "model:\n  vocab_size: 1024\ntrain:\n  lr: 0.001\n  steps: 5\n  lr: 0.1\n";
  refused(dir + "/duplicate.yaml", "duplicate.yaml: duplicate key 'train.lr' at line 6 (first at line 4)");
  std::ofstream(dir + "/empty.yaml") << "# a recipe that lost its contents\n\n";
  refused(dir + "/empty.yaml", "empty.yaml: the config is empty");

  std::string items = "&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]";
  for (int i = 1; i < 9; ++i) {
    items += ", &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) items += (k ? ", *a" : "*a") + std::to_string(i - 1);
    items += "]";
  }
  std::ofstream(dir + "/bomb.yaml") << "data:\n  text_files: [" << items << "]\n";
  const auto start = Clock::now();
  refused(dir + "/bomb.yaml", "bomb.yaml: the YAML expands to more than 100000 nodes");
  std::printf("alias bomb: keel train exit 2 after %.2f s (the whole process)\n", seconds_since(start));
}

}  // namespace
}  // namespace keel::reliability
