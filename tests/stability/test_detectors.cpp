// The anomaly detectors on synthetic series: no false positives on a long healthy run, and each
// fault (grad spike, loss jump, sustained rise, non-finite, update ratio) detected; warm-up rules.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "stability/detectors.h"
#include "synthetic_series.h"

namespace keel {
namespace {

using testing_stability::default_config;
using testing_stability::healthy_series;

// Feeds a series through the grad and loss detectors the way the monitor does (learning only
// healthy, non-elevated steps); returns the number of anomalous steps.
struct DetectorRig {
  StabilityConfig config;
  GradNormExplosionDetector grad;
  LossSpikeDetector loss;
  explicit DetectorRig(const StabilityConfig& c) : config(c), grad(c), loss(c) {}

  std::pair<Detection, Detection> step(const StepSignals& s) {
    Detection g = grad.observe(s.step, s.grad_norm);
    Detection l = loss.observe(s.step, s.loss);
    if (!g.anomaly && !l.anomaly && !loss.elevated()) {
      grad.learn(s.step, s.grad_norm);
      loss.learn(s.step, s.loss);
    }
    return {g, l};
  }
  int run(const std::vector<StepSignals>& series) {
    int anomalies = 0;
    for (const auto& s : series) {
      auto [g, l] = step(s);
      anomalies += (g.anomaly || l.anomaly) ? 1 : 0;
    }
    return anomalies;
  }
};

class DetectorsByMethod : public ::testing::TestWithParam<const char*> {};

TEST_P(DetectorsByMethod, NoFalsePositivesOnLongHealthyRun) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    DetectorRig rig(default_config(GetParam()));
    EXPECT_EQ(rig.run(healthy_series(5000, seed)), 0) << "seed " << seed;
  }
}

TEST_P(DetectorsByMethod, SingleGradSpikeX20Detected) {
  auto series = healthy_series(3001, 42);
  DetectorRig rig(default_config(GetParam()));
  series.back().grad_norm *= 20;
  series.pop_back();
  ASSERT_EQ(rig.run(series), 0);
  StepSignals spike = healthy_series(3001, 42).back();
  spike.grad_norm *= 20;
  Detection d = rig.grad.observe(3000, spike.grad_norm, {0.1, 9.0, 0.2});
  EXPECT_TRUE(d.anomaly);
  EXPECT_EQ(d.kind, "grad_explosion");
  EXPECT_GT(d.z, 6.0);
  EXPECT_NEAR(d.baseline, 0.5, 0.1);  // exp(center) in norm units
  EXPECT_NE(d.reason.find("layer grad norm: #1"), std::string::npos) << d.reason;
}

TEST_P(DetectorsByMethod, LossJumpOfTwoIsLossSpike) {
  auto series = healthy_series(3001, 5);
  StepSignals jump = series.back();
  series.pop_back();
  DetectorRig rig(default_config(GetParam()));
  ASSERT_EQ(rig.run(series), 0);
  Detection d = rig.loss.observe(3000, jump.loss + 2.0);
  EXPECT_TRUE(d.anomaly);
  EXPECT_EQ(d.kind, "loss_spike");
  EXPECT_GT(d.z, 12.0);
  EXPECT_EQ(d.onset_step, 3000);
}

INSTANTIATE_TEST_SUITE_P(Methods, DetectorsByMethod, ::testing::Values("median_mad", "ema"));

TEST(GradNormExplosionDetector, CeilingWorksWithoutBaseline) {
  StabilityConfig c = default_config();
  GradNormExplosionDetector grad(c);
  Detection over = grad.observe(100, 150.0);
  EXPECT_TRUE(over.anomaly);
  EXPECT_NE(over.reason.find("ceiling"), std::string::npos) << over.reason;
  EXPECT_FALSE(grad.observe(100, 50.0).anomaly);  // no baseline: no z verdict
  c.grad_norm_ceiling = 0;  // off
  EXPECT_FALSE(GradNormExplosionDetector(c).observe(100, 1e6).anomaly);
}

TEST(GradNormExplosionDetector, NeedsMinimumBaseline) {
  StabilityConfig c = default_config();
  c.warmup_steps = 0;
  GradNormExplosionDetector grad(c);
  for (int i = 0; i < kMinBaselineSamples - 1; ++i) grad.learn(i, 1.0 + 0.01 * (i % 3));
  EXPECT_FALSE(grad.observe(20, 30.0).anomaly);
  grad.learn(20, 1.0);
  EXPECT_TRUE(grad.observe(21, 30.0).anomaly);
}

TEST(LossSpikeDetector, TinyRiseInFlatWindowIsNotASpike) {
  StabilityConfig c = default_config();
  LossSpikeDetector loss(c);
  for (int t = 10; t < 150; ++t) {
    Detection d = loss.observe(t, 3.0 + (t % 2 ? 1e-4 : -1e-4));
    ASSERT_FALSE(d.anomaly) << t;
    loss.learn(t, 3.0 + (t % 2 ? 1e-4 : -1e-4));
  }
  Detection small = loss.observe(150, 3.05);  // huge z, but rise < loss_min_rise
  EXPECT_GT(small.z, 6.0);
  EXPECT_FALSE(small.anomaly);
  Detection big = loss.observe(151, 3.15);
  EXPECT_TRUE(big.anomaly);
  EXPECT_EQ(big.kind, "loss_spike");
}

// Loss 3.0 + a repeating {-0.1, -0.05, 0, 0.05, 0.1}: median ~3.0, MAD ~0.074. (Not a two-valued
// pattern: for that, the median sits on one of the two values and the MAD is 0.)
double cycle_noise(int64_t t) { return 0.05 * static_cast<double>(t % 5 - 2); }

LossSpikeDetector cyclic_baseline(const StabilityConfig& c, int until_step) {
  LossSpikeDetector loss(c);
  for (int t = 0; t < until_step; ++t) {
    double x = 3.0 + cycle_noise(t);
    EXPECT_FALSE(loss.observe(t, x).anomaly) << t;
    loss.learn(t, x);
  }
  return loss;
}

TEST(LossSpikeDetector, HeldRiseBecomesSustainedAfterMSteps) {
  StabilityConfig c = default_config();
  LossSpikeDetector loss = cyclic_baseline(c, 200);
  EXPECT_NEAR(loss.baseline().center(), 3.0, 0.051);
  EXPECT_NEAR(loss.baseline().scale(), 0.05 * 1.4826, 1e-9);
  // 3.3 is >= 0.25 above the baseline (> margin 0.2) but z <= 4.8 (< 6): not a point spike.
  for (int t = 200; t < 200 + c.sustained_steps - 1; ++t) {
    Detection d = loss.observe(t, 3.3);
    ASSERT_FALSE(d.anomaly) << t << ": " << d.reason;
    ASSERT_TRUE(loss.elevated());
  }
  Detection d = loss.observe(200 + c.sustained_steps - 1, 3.3);
  EXPECT_TRUE(d.anomaly);
  EXPECT_EQ(d.kind, "sustained_spike");
  EXPECT_EQ(d.onset_step, 200);
  EXPECT_EQ(loss.sustained_run(), c.sustained_steps);
  EXPECT_NE(d.reason.find("since step 200"), std::string::npos) << d.reason;
  // One step back under the margin resets the run.
  EXPECT_FALSE(loss.observe(300, 3.0).anomaly);
  EXPECT_EQ(loss.sustained_run(), 0);
}

TEST(LossSpikeDetector, GradualRiseDetectedAsSustained) {
  StabilityConfig c = default_config();
  LossSpikeDetector loss = cyclic_baseline(c, 200);
  int64_t detected_at = -1, onset = -1;
  for (int t = 200; t < 400 && detected_at < 0; ++t) {
    double x = 3.0 + std::min(0.35, 0.01 * (t - 200));  // +0.01 per step, then held
    Detection d = loss.observe(t, x);
    if (d.anomaly) {
      EXPECT_EQ(d.kind, "sustained_spike") << d.reason;
      detected_at = t;
      onset = d.onset_step;
    } else if (!loss.elevated()) {
      loss.learn(t, x);  // the early, small part of the rise does enter the baseline
    }
  }
  ASSERT_GT(detected_at, 0) << "gradual rise never detected";
  EXPECT_EQ(detected_at - onset + 1, c.sustained_steps);
  EXPECT_GE(onset, 220);
  EXPECT_LE(onset, 240);
}

TEST(Detectors, WarmupSuppressesVerdicts) {
  StabilityConfig c = default_config();  // warmup 50, baselines from step 10
  EXPECT_EQ(baseline_start_step(c), 10);
  GradNormExplosionDetector grad(c);
  LossSpikeDetector loss(c);
  grad.learn(5, 1.0);  // before baseline_start_step: ignored
  loss.learn(5, 5.0);
  EXPECT_EQ(grad.baseline().count(), 0);
  EXPECT_EQ(loss.baseline().count(), 0);
  for (int t = 10; t < 40; ++t) {
    grad.learn(t, 1.0 + 0.05 * (t % 3));
    loss.learn(t, 5.0 + 0.01 * (t % 3));
  }
  EXPECT_FALSE(grad.observe(40, 20.0).anomaly);
  EXPECT_FALSE(grad.observe(40, 1e4).anomaly);  // not even the ceiling during warm-up
  EXPECT_FALSE(loss.observe(40, 7.0).anomaly);
  EXPECT_TRUE(grad.observe(50, 20.0).anomaly);
  EXPECT_TRUE(loss.observe(50, 7.0).anomaly);
}

TEST(NonFiniteDetector, FlagsEverySourceFromStepZero) {
  NonFiniteDetector nf;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(nf.observe(0, 5.0, 1.0, true, {0.5, 0.5}).anomaly);
  Detection a = nf.observe(0, nan, 1.0, true);
  EXPECT_TRUE(a.anomaly);
  EXPECT_EQ(a.kind, "nonfinite");
  EXPECT_NE(a.reason.find("loss"), std::string::npos);
  EXPECT_TRUE(nf.observe(1, 5.0, inf, true).anomaly);
  Detection flag = nf.observe(2, 5.0, 1.0, false);
  EXPECT_TRUE(flag.anomaly);
  EXPECT_NE(flag.reason.find("non-finite gradients"), std::string::npos);
  Detection layer = nf.observe(3, 5.0, 1.0, true, {0.5, nan});
  EXPECT_TRUE(layer.anomaly);
  EXPECT_NE(layer.reason.find("layer #1"), std::string::npos) << layer.reason;
}

TEST(UpdateRatioDetector, OptionalCeiling) {
  StabilityConfig c = default_config();
  EXPECT_FALSE(UpdateRatioDetector(c).observe(100, 10.0).anomaly);  // off by default
  c.update_ratio_ceiling = 0.01;
  UpdateRatioDetector ratio(c);
  Detection d = ratio.observe(100, 0.02);
  EXPECT_TRUE(d.anomaly);
  EXPECT_EQ(d.kind, "update_ratio");
  EXPECT_FALSE(ratio.observe(100, 0.005).anomaly);
  EXPECT_FALSE(ratio.observe(10, 0.02).anomaly);  // warm-up
  EXPECT_TRUE(ratio.observe(100, std::numeric_limits<double>::quiet_NaN()).anomaly);
}

}  // namespace
}  // namespace keel
