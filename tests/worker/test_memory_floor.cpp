// The training-memory floor (worker/memory_floor.h): its parameter count never exceeds what the
// model really builds (so refusing above the floor never turns away a run that fits) and stays
// close to it; and `keel train` refuses a shape no machine here can hold in about a second, exit 2,
// with nothing written.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>

#include "model/gpt.h"
#include "tests/worker/process_util.h"
#include "worker/memory_floor.h"

namespace keel {
namespace {
using namespace testing_util;

ModelConfig small_model() {
  ModelConfig model;
  model.vocab_size = 1000;
  model.context_length = 64;
  model.num_layers = 3;
  model.num_heads = 4;
  model.d_model = 96;
  return model;
}

TEST(MemoryFloor, CountsAtMostTheParametersTheModelBuilds) {
  std::vector<ModelConfig> shapes;
  shapes.push_back(small_model());
  ModelConfig untied = small_model();
  untied.tie_embeddings = false;
  shapes.push_back(untied);
  ModelConfig swiglu = small_model();
  swiglu.activation = "swiglu";
  shapes.push_back(swiglu);
  ModelConfig no_bias = small_model();
  no_bias.bias = false;
  no_bias.mlp_hidden = 200;
  shapes.push_back(no_bias);
  ModelConfig linear = small_model();
  linear.attention = "linear";
  shapes.push_back(linear);
  for (const auto& shape : shapes) {
    const int64_t built = Gpt(shape)->num_parameters();
    const int64_t floor = training_memory_floor(shape, 1, 1, 1).parameters;
    EXPECT_LE(floor, built) << shape.activation << " tied " << shape.tie_embeddings;
    EXPECT_GE(static_cast<double>(floor), 0.9 * static_cast<double>(built)) << shape.activation;
  }
  // GPT-2 small at the padded vocabulary: 124.5M built (learned positions, biases and norms
  // included); the floor counts the matrices only.
  ModelConfig gpt2;
  gpt2.vocab_size = 50304;
  gpt2.context_length = 1024;
  gpt2.num_layers = 12;
  gpt2.num_heads = 12;
  gpt2.d_model = 768;
  const auto floor = training_memory_floor(gpt2, 16, 1024, 1);
  EXPECT_EQ(floor.parameters, 50304LL * 768 + 12LL * (4 * 768 * 768 + 2 * 768 * 3072));
  EXPECT_EQ(floor.bytes_per_rank, 16 * floor.parameters + 2LL * 4 * 16 * 1024 * 50304);
  // Tensor parallelism divides it.
  EXPECT_LT(training_memory_floor(gpt2, 16, 1024, 2).bytes_per_rank, floor.bytes_per_rank / 2 + 1);
}

TEST(MemoryFloor, AShapeThatCannotFitIsRefusedBeforeAnythingIsWritten) {
  RunConfig config;
  config.model.d_model = 16384;
  config.model.num_heads = 128;
  config.model.num_layers = 48;
  const std::string problem = memory_floor_problem(config, 1, 24LL << 30, "this host's RAM");
  EXPECT_NE(problem.find("the model cannot fit"), std::string::npos) << problem;
  EXPECT_NE(problem.find("this host's RAM has 24.0 GiB"), std::string::npos) << problem;
  EXPECT_NE(problem.find("model.d_model"), std::string::npos) << problem;
  EXPECT_EQ(memory_floor_problem(config, 1, 0, "unknown"), "") << "unknown capacity: nothing to check";
  EXPECT_EQ(memory_floor_problem(RunConfig{}, 1, 24LL << 30, "this host's RAM"), "");

  const std::string dir = fresh_dir("memory-floor");
  const auto start = std::chrono::steady_clock::now();
  const auto r = keel_train(dir, "--set model.d_model=16384 --set model.num_heads=128 --set model.num_layers=48");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("config error: the model cannot fit"), std::string::npos) << r.output;
  EXPECT_FALSE(std::ifstream(dir + "/checkpoints").good());
  EXPECT_FALSE(std::ifstream(dir + "/metrics.jsonl").good());
  std::printf("a 155B-parameter shape refused by keel train in %.2f s (exit %d)\n", seconds, r.exit_code);
}

}  // namespace
}  // namespace keel
