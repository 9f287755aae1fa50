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

TEST(GradNormExplosionDetector, AboveTheCeilingIsAbsoluteAlsoWhenTheZTestFires) {
  // Both verdicts hold: the ceiling decides that it is harm in itself (never a new level).
  StabilityConfig c = default_config();
  c.warmup_steps = 0;
  GradNormExplosionDetector grad(c);
  for (int i = 0; i < 50; ++i) grad.learn(i, 1.0 + 0.01 * (i % 3));
  Detection both = grad.observe(50, 150.0);
  EXPECT_TRUE(both.anomaly);
  EXPECT_TRUE(both.absolute);
  Detection relative = grad.observe(50, 30.0);  // x30 but under the ceiling of 100
  EXPECT_TRUE(relative.anomaly);
  EXPECT_FALSE(relative.absolute);
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
  loss.corroborate();
  Detection small = loss.observe(150, 3.05);  // huge z, but rise < loss_min_rise
  EXPECT_GT(small.z, 6.0);
  EXPECT_FALSE(small.anomaly);
  // A loss-only rise of 0.15 is not judged on one step (one odd batch); with a gradient anomaly
  // of the same step it is a spike, and a severe rise (> level_shift_max_rise) is one alone.
  EXPECT_FALSE(loss.observe(151, 3.15).anomaly);
  loss.corroborate();
  Detection big = loss.observe(152, 3.15);
  EXPECT_TRUE(big.anomaly);
  EXPECT_EQ(big.kind, "loss_spike");
  Detection severe = loss.observe(153, 4.5);
  EXPECT_TRUE(severe.anomaly);
  EXPECT_NE(severe.reason.find("severe"), std::string::npos) << severe.reason;
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

TEST(LossSpikeDetector, HeldRiseIsFollowedAsALevelShift) {
  StabilityConfig c = default_config();
  LossSpikeDetector loss = cyclic_baseline(c, 200);
  EXPECT_NEAR(loss.baseline().center(), 3.0, 0.051);
  EXPECT_NEAR(loss.baseline().scale(), 0.05 * 1.4826, 1e-9);
  // 3.3 is 0.3 above the baseline (> margin 0.2): the fast average is elevated from the third
  // step; after sustained_steps elevated steps with no growth and nothing corroborating, the
  // detector judges a level shift and follows it.
  int64_t judged = -1;
  for (int t = 200; t < 260; ++t) {
    Detection d = loss.observe(t, 3.3);
    ASSERT_FALSE(d.anomaly) << t << ": " << d.reason;
    if (d.kind == event_kind::kLevelShift) {
      judged = t;
      EXPECT_EQ(d.onset_step, 202);
      EXPECT_NE(d.reason.find("baseline follows"), std::string::npos) << d.reason;
    }
  }
  EXPECT_EQ(judged, 202 + c.sustained_steps - 1);
  EXPECT_NEAR(loss.baseline().center(), 3.3, 1e-12);
  EXPECT_FALSE(loss.elevated());
}

TEST(LossSpikeDetector, CorroboratedHeldRiseIsASustainedSpike) {
  StabilityConfig c = default_config();
  LossSpikeDetector loss = cyclic_baseline(c, 200);
  Detection last;
  for (int t = 200; t < 200 + 2 + c.sustained_steps; ++t) {
    if (t == 210) loss.corroborate();
    last = loss.observe(t, 3.3);
  }
  EXPECT_TRUE(last.anomaly);
  EXPECT_EQ(last.kind, "sustained_spike");
  EXPECT_EQ(last.onset_step, 202);
  EXPECT_NE(last.reason.find("corroborated"), std::string::npos) << last.reason;
  // Reported every step while it lasts; one step back under the margin (the fast average needs a
  // few) ends it.
  EXPECT_TRUE(loss.observe(222, 3.3).anomaly);
  for (int t = 223; t < 230; ++t) loss.observe(t, 3.0);
  EXPECT_EQ(loss.sustained_run(), 0);
}

TEST(LossSpikeDetector, ACorroborationBeforeARebuildDoesNotCarryOver) {
  // A gradient anomaly just before a rollback (the baselines are rebuilt) must not turn a level
  // shift of the new timeline into a sustained spike.
  StabilityConfig c = default_config();
  LossSpikeDetector loss = cyclic_baseline(c, 200);
  loss.corroborate();
  loss.observe(199, 3.0);
  std::vector<double> history;
  for (int t = 0; t < 200; ++t) history.push_back(3.0 + cycle_noise(t));
  loss.rebuild(history);
  for (int t = 200; t < 200 + 2 + c.sustained_steps; ++t) {
    Detection d = loss.observe(t, 3.3);
    EXPECT_FALSE(d.anomaly) << t << ": " << d.reason;
  }
}

TEST(LossSpikeDetector, GrowingRiseIsASustainedSpike) {
  StabilityConfig c = default_config();
  LossSpikeDetector loss = cyclic_baseline(c, 200);
  int64_t detected_at = -1, onset = -1;
  for (int t = 200; t < 400 && detected_at < 0; ++t) {
    double x = 3.0 + 0.02 * (t - 200);  // a divergence: +0.02 per step
    Detection d = loss.observe(t, x);
    ASSERT_NE(d.kind, event_kind::kLevelShift) << t;
    if (d.anomaly) {
      EXPECT_EQ(d.kind, "sustained_spike") << d.reason;
      EXPECT_NE(d.reason.find("growing"), std::string::npos) << d.reason;
      detected_at = t;
      onset = d.onset_step;
    } else if (!loss.elevated()) {
      loss.learn(t, x);  // the early, small part of the rise does enter the baseline
    }
  }
  ASSERT_GT(detected_at, 0) << "growing rise never detected";
  EXPECT_EQ(detected_at - onset + 1, c.sustained_steps);
}

TEST(Detectors, CeilingsActFromStepZeroAndZScoresOnceABaselineExists) {
  StabilityConfig c = default_config();  // baselines from step 10
  EXPECT_EQ(baseline_start_step(c), 10);
  GradNormExplosionDetector grad(c);
  LossSpikeDetector loss(c, std::log(8192.0));
  grad.learn(5, 1.0);  // before baseline_start_step: ignored
  loss.learn(5, 5.0);
  EXPECT_EQ(grad.baseline().count(), 0);
  EXPECT_EQ(loss.baseline().count(), 0);
  // From step 0: the grad ceiling and a loss worse than a uniform guess (ln 8192 = 9.01 + 1).
  EXPECT_TRUE(grad.observe(0, 150.0).anomaly);
  EXPECT_FALSE(grad.observe(1, 20.0).anomaly);  // no baseline: no z verdict
  EXPECT_TRUE(loss.observe(2, 25.4).anomaly);
  EXPECT_FALSE(loss.observe(3, 9.5).anomaly);
  for (int t = 10; t < 10 + kMinBaselineSamples; ++t) {
    grad.learn(t, 1.0 + 0.05 * (t % 3));
    loss.learn(t, 5.0 + 0.01 * (t % 3));
  }
  EXPECT_TRUE(grad.observe(26, 20.0).anomaly);  // as soon as the baseline is ready
  loss.corroborate();
  EXPECT_TRUE(loss.observe(26, 7.0).anomaly);
}

TEST(UpdateRatioDetector, JumpAgainstItsBaseline) {
  StabilityConfig c = default_config();
  UpdateRatioDetector ratio(c);
  for (int t = 10; t < 60; ++t) ratio.learn(t, 1e-3 * (1.0 + 0.05 * (t % 3)));
  EXPECT_FALSE(ratio.observe(60, 2.5e-3).anomaly);  // x2.5: an LR change within reason
  Detection jump = ratio.observe(60, 3e-2);         // x30: the LR jumped
  EXPECT_TRUE(jump.anomaly);
  EXPECT_EQ(jump.kind, "update_ratio");
  EXPECT_NE(jump.reason.find("learning rate jumped"), std::string::npos) << jump.reason;
  EXPECT_FALSE(ratio.observe(60, 0.0).anomaly);  // not measured
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
  EXPECT_TRUE(d.absolute);
  EXPECT_EQ(d.kind, "update_ratio");
  EXPECT_FALSE(ratio.observe(100, 0.005).anomaly);
  EXPECT_TRUE(ratio.observe(1, 0.02).anomaly);  // the ceiling acts from step 0
  EXPECT_TRUE(ratio.observe(100, std::numeric_limits<double>::quiet_NaN()).anomaly);
}

}  // namespace
}  // namespace keel
