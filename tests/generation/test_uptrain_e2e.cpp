// End to end through the real `keel` binary on the CPU: pretrain the tiny model, `keel uptrain` it
// to SUPRA linear attention (the linearised model's val loss falls with uptraining; lineage is
// recorded), then `keel generate` from both checkpoints (softmax KV cache, linear state, TDA).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_bytes(path)); }

TEST(Uptrain, LowersTheLinearisedModelsValLossAndGenerates) {
  const std::string parent = fresh_dir("uptrain_parent"), child = fresh_dir("uptrain_child");
  auto pretrain = keel_train(parent, "--set train.steps=150 --set train.eval_every=50");
  ASSERT_EQ(pretrain.exit_code, 0) << pretrain.output;

  auto up = run_process(keel_binary() + " uptrain --from " + parent + " --steps 60 --run-dir " + child +
                        " --set data.dir=" + test_dataset() + " --set train.eval_every=20 --set checkpoint.every=30");
  ASSERT_EQ(up.exit_code, 0) << up.output;
  const auto init = read_json(child + "/init_from.json");
  EXPECT_NE(init["checkpoint"].get<std::string>().find("step_00000150"), std::string::npos);
  EXPECT_EQ(init["fresh_parameters"].size(), 2u * 4u);  // 2 layers x phi/norm weight/bias
  const double before = init["val_loss"].get<double>();
  std::vector<double> val;
  for (const auto& r : read_jsonl(child + "/metrics.jsonl"))
    if (r.contains("val_loss")) val.push_back(r["val_loss"].get<double>());
  ASSERT_EQ(val.size(), 3u);
  EXPECT_LT(val.back(), before - 0.05) << "before " << before << " after " << val.back();
  const auto info = read_json(child + "/run_info.json");
  EXPECT_EQ(info["parent"].get<std::string>(), parent);
  EXPECT_EQ(info["status"].get<std::string>(), "completed");
  EXPECT_NE(read_bytes(child + "/config.yaml").find("attention: linear"), std::string::npos);

  for (const std::string& run : {parent, child}) {
    auto gen = run_process(keel_binary() + " generate " + run + " --prompt 'The house was' --max-tokens 12 " +
                           "--temperature 0.8 --top-k 40 --top-p 0.95 --seed 3 --json " + run + "/gen.json");
    ASSERT_EQ(gen.exit_code, 0) << gen.output;
    EXPECT_NE(gen.output.find("tokens/s"), std::string::npos) << gen.output;
    const auto report = read_json(run + "/gen.json");
    EXPECT_GT(report["new_tokens"].get<int64_t>(), 0);
    EXPECT_EQ(report["text"].get<std::string>().rfind("The house was", 0), 0u) << report["text"];
  }
  auto sweep = run_process(keel_binary() + " generate " + parent + " --prompt-from-val 8 --max-tokens 10 " +
                           "--tda-sweep 0,1 --eval-sequences 2 --json " + parent + "/tda.json");
  ASSERT_EQ(sweep.exit_code, 0) << sweep.output;
  const auto rows = read_json(parent + "/tda.json")["tda"];
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1]["agreement"].get<double>(), 1.0);  // threshold 0 == dense
  EXPECT_NEAR(rows[1]["val_loss_masked"].get<double>(), rows[0]["val_loss_masked"].get<double>(), 1e-9);
  EXPECT_GT(rows[2]["sparsity"].get<double>(), 0.0);
}

}  // namespace
}  // namespace keel
