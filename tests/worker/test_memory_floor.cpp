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
  // A sharded optimizer divides the moments' 8 bytes over the DP ranks: 8 + 8 / 4 = 10 a parameter.
  EXPECT_EQ(training_memory_floor(gpt2, 16, 1024, 1, 4).bytes_per_rank,
            10 * floor.parameters + 2LL * 4 * 16 * 1024 * 50304);
}

// configs/gpt2-760m.yaml and gpt2-1.5b.yaml are GPT-2 large and XL: their matrices are the
// published models' less the positions, biases and norms (774,030,080 and 1,557,611,200 parameters
// at vocab 50257), and the XL floor fits one H200 (about 141 GB), less with a sharded optimizer.
TEST(MemoryFloor, GptTwoLargeAndXlConfigsHaveThePublishedShapes) {
  struct Shape {
    const char* file;
    int64_t d, layers, heads, published;
  };
  for (const Shape& shape : {Shape{"gpt2-760m.yaml", 1280, 36, 20, 774030080},
                             Shape{"gpt2-1.5b.yaml", 1600, 48, 25, 1557611200}}) {
    const RunConfig config = RunConfig::load(std::string(KEEL_SOURCE_DIR) + "/configs/" + shape.file, {});
    EXPECT_EQ(config.model.d_model, shape.d) << shape.file;
    EXPECT_EQ(config.model.num_layers, shape.layers) << shape.file;
    EXPECT_EQ(config.model.num_heads, shape.heads) << shape.file;
    const auto floor = training_memory_floor(config.model, config.train.batch_size, config.seq_len(), 1);
    const int64_t d = shape.d;
    EXPECT_EQ(floor.parameters, 50304 * d + shape.layers * (4 * d * d + 2 * d * 4 * d)) << shape.file;
    EXPECT_LE(floor.parameters, shape.published + (50304 - 50257) * d) << shape.file;
    EXPECT_GE(static_cast<double>(floor.parameters), 0.99 * static_cast<double>(shape.published)) << shape.file;
  }
  const RunConfig xl = RunConfig::load(std::string(KEEL_SOURCE_DIR) + "/configs/gpt2-1.5b.yaml", {});
  EXPECT_TRUE(xl.train.activation_checkpointing);
  EXPECT_EQ(memory_floor_problem(xl, 1, int64_t{141} * 1000 * 1000 * 1000, "an H200"), "");
  const auto whole = training_memory_floor(xl.model, xl.train.batch_size, xl.seq_len(), 1);
  const auto sharded = training_memory_floor(xl.model, xl.train.batch_size, xl.seq_len(), 1, 8);
  EXPECT_EQ(whole.bytes_per_rank - sharded.bytes_per_rank, static_cast<int64_t>(7.0 * static_cast<double>(whole.parameters)));
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
