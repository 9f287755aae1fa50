// Model diagnostics during training, through the real `keel` binary: they appear in metrics.jsonl
// under names containing entropy, linearity and sparsity, and leave training bit-identical.
#include <gtest/gtest.h>

#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

TEST(DiagnosticsE2E, MetricsAppearAndTrainingIsBitIdenticalWithThemOn) {
  const std::string on = fresh_dir("diagnostics_on"), off = fresh_dir("diagnostics_off");
  auto a = keel_train(on, "--set train.steps=20 --set diagnostics.every=5 --set model.dropout=0.1");
  auto b = keel_train(off, "--set train.steps=20 --set diagnostics.every=0 --set model.dropout=0.1");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_EQ(b.exit_code, 0) << b.output;
  auto ra = read_jsonl(on + "/metrics.jsonl"), rb = read_jsonl(off + "/metrics.jsonl");
  ASSERT_EQ(ra.size(), 20u);
  ASSERT_EQ(rb.size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(ra[i]["loss"].get<double>(), rb[i]["loss"].get<double>()) << i;
  EXPECT_TRUE(read_bytes(on + "/checkpoints/step_00000020/model.safetensors") ==
              read_bytes(off + "/checkpoints/step_00000020/model.safetensors"));
  // Steps 5, 10, 15, 20 (records 4, 9, 14, 19) carry the diagnostics; others do not.
  for (const char* word : {"entropy", "linearity", "sparsity"}) {
    int found = 0;
    for (auto& [key, value] : ra[4].items()) found += key.find(word) != std::string::npos;
    EXPECT_GT(found, 0) << word;
  }
  EXPECT_TRUE(ra[4].contains("diag.layer0.head0.attention_entropy")) << ra[4].dump();
  EXPECT_FALSE(ra[5].contains("diag.layer0.linearity"));
  EXPECT_FALSE(rb[4].contains("diag.layer0.linearity"));
}

}  // namespace
}  // namespace keel
