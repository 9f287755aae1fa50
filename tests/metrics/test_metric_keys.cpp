// The worker vocabulary (metrics/metric_keys.h): every committed value key resolves to its
// metric with bounded layer/head labels; anything else is unknown, and event words map onto the
// rollback / abort / restart counters.
#include <gtest/gtest.h>

#include "metrics/metric_keys.h"

namespace keel::coord {
namespace {

void expect_key(const std::string& key, ValueMetric metric, const std::string& layer = "",
                const std::string& head = "") {
  const ValueKey parsed = parse_value_key(key);
  EXPECT_EQ(parsed.metric, metric) << key;
  EXPECT_EQ(parsed.layer, layer) << key;
  EXPECT_EQ(parsed.head, head) << key;
}

TEST(MetricsKeys, PlainTrainingKeys) {
  expect_key("loss", ValueMetric::kLoss);
  expect_key("val_loss", ValueMetric::kValLoss);
  expect_key("grad_norm", ValueMetric::kGradNorm);
  expect_key("lr", ValueMetric::kLearningRate);
  expect_key("tokens_per_second", ValueMetric::kTokensPerSecond);
  expect_key("mfu", ValueMetric::kMfu);
  expect_key("step_time_seconds", ValueMetric::kStepTime);
  expect_key("skipped", ValueMetric::kSkipped);
  expect_key("update_ratio", ValueMetric::kUpdateRatio);
  expect_key("tokens_seen", ValueMetric::kTokensSeen);
  expect_key("gpu_memory_bytes", ValueMetric::kGpuMemory);
  expect_key("checkpoint_save_seconds", ValueMetric::kCheckpointSaveSeconds);
  expect_key("checkpoint_bytes", ValueMetric::kCheckpointBytes);
  expect_key("optimizer_state_bytes", ValueMetric::kOptimizerStateBytes);
  expect_key("diag.embedding_output_std", ValueMetric::kEmbeddingOutputStd);
  expect_key("diag.attention_entropy_overload_fraction", ValueMetric::kAttentionEntropyOverload);
}

TEST(MetricsKeys, LayerGradNormsNameTheirLayer) {
  expect_key("layer_grad_norm.embedding", ValueMetric::kLayerGradNorm, "embedding");
  expect_key("layer_grad_norm.head", ValueMetric::kLayerGradNorm, "head");
  expect_key("layer_grad_norm.block.0", ValueMetric::kLayerGradNorm, "block.0");
  expect_key("layer_grad_norm.block.47", ValueMetric::kLayerGradNorm, "block.47");
}

TEST(MetricsKeys, DiagnosticsGetLayerAndHeadLabels) {
  expect_key("diag.layer3.head11.attention_entropy", ValueMetric::kAttentionEntropy, "block.3", "11");
  expect_key("diag.layer0.head0.attention_normalised_entropy", ValueMetric::kAttentionNormalisedEntropy,
             "block.0", "0");
  expect_key("diag.layer2.linearity", ValueMetric::kLinearity, "block.2");
  expect_key("diag.layer2.linearity_without_residual", ValueMetric::kLinearityWithoutResidual, "block.2");
  expect_key("diag.layer1.mlp_sparsity", ValueMetric::kMlpSparsity, "block.1");
  expect_key("diag.layer1.mlp_exactly_zero", ValueMetric::kMlpExactlyZero, "block.1");
  expect_key("diag.layer5.attention_output_rms", ValueMetric::kAttentionOutputRms, "block.5");
  expect_key("diag.layer5.mlp_output_rms", ValueMetric::kMlpOutputRms, "block.5");
}

TEST(MetricsKeys, AnythingElseIsUnknownSoNoUnboundedLabelAppears) {
  for (const char* key : {"", "Loss", "loss ", "tokens_per_s", "layer_grad_norm.", "layer_grad_norm.block.",
                          "layer_grad_norm.block.x", "layer_grad_norm.block.01", "layer_grad_norm.block.123456",
                          "layer_grad_norm.lm_head", "diag.layer", "diag.layerX.linearity", "diag.layer1.",
                          "diag.layer1.head2.linearity", "diag.layer1.attention_entropy",
                          "diag.layer1.head.attention_entropy", "diag.layer99999.linearity",
                          "diag.layer1.linearity.extra", "step"}) {
    EXPECT_EQ(parse_value_key(key).metric, ValueMetric::kUnknown) << "'" << key << "'";
  }
}

TEST(MetricsKeys, EventKindsAndActions) {
  EXPECT_TRUE(is_detection_kind("loss_spike"));
  EXPECT_TRUE(is_detection_kind("nonfinite"));
  EXPECT_FALSE(is_detection_kind("recovered"));
  EXPECT_FALSE(is_detection_kind("rollback"));
  EXPECT_EQ(bounded_trigger_kind("grad_explosion"), "grad_explosion");
  EXPECT_EQ(bounded_trigger_kind("rollback"), "rollback");
  EXPECT_EQ(bounded_trigger_kind("step_12345"), kOtherKind);
  EXPECT_EQ(consequence_of_action("rollback"), Consequence::kRollback);
  EXPECT_EQ(consequence_of_action("abort"), Consequence::kAbort);
  EXPECT_EQ(consequence_of_action("remedy_restart"), Consequence::kRestart);
  EXPECT_EQ(consequence_of_action("skip_update"), Consequence::kNone);
  EXPECT_EQ(consequence_of_action("apply"), Consequence::kNone);
  EXPECT_EQ(consequence_of_lifecycle_kind("rollback"), Consequence::kRollback);
  EXPECT_EQ(consequence_of_lifecycle_kind("abort"), Consequence::kAbort);
  EXPECT_EQ(consequence_of_lifecycle_kind("restart"), Consequence::kRestart);
  EXPECT_EQ(consequence_of_lifecycle_kind("loss_spike"), Consequence::kNone);
}

}  // namespace
}  // namespace keel::coord
