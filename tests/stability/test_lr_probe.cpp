// The LR range test (stability/lr_probe.h) on synthetic loss curves whose best LR is known: the
// geometric ramp, the divergence rule, the choice (best LR / divisor), a non-finite first step, a
// range that never diverges, and a save/restore in the middle that decides the same.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "stability/lr_probe.h"

namespace keel {
namespace {

// A loss that falls faster the higher the LR until `edge` (a fraction of the peak), then blows
// up: 9 - 2 log10(lr / 1e-4) below the edge, 9 + 20 (lr / edge - 1) above it. The loss observed at
// step s answers for the LR of step s - 1.
double loss_after(double lr, double edge) {
  if (lr > edge) return 9.0 + 20.0 * (lr / edge - 1.0);
  return 9.0 - 2.0 * std::max(0.0, std::log10(lr / 1e-4));
}

struct ProbeRun {
  int64_t steps_taken = 0;
  double chosen = 0;
};

ProbeRun run_probe(LearningRateProbe& probe, double edge) {
  ProbeRun r;
  for (int64_t step = 0;; ++step) {
    const double lr = step == 0 ? 0.0 : probe.fraction_at(step - 1);
    const double loss = step == 0 ? 9.0 : loss_after(lr, edge);
    ++r.steps_taken;
    if (probe.observe(step, loss, true)) break;
  }
  r.chosen = probe.chosen_fraction();
  return r;
}

TEST(LearningRateProbe, RampsGeometricallyFromSpanDecadesBelowUpToTheFailedLr) {
  LearningRateProbe probe;
  probe.plan(0.5, 31, 3.0, 10.0, 0.5);
  EXPECT_TRUE(probe.planned());
  probe.begin();
  EXPECT_TRUE(probe.active());
  EXPECT_NEAR(probe.fraction_at(0), 0.5e-3, 1e-15);
  EXPECT_NEAR(probe.fraction_at(10), 0.5e-2, 1e-14);
  EXPECT_NEAR(probe.fraction_at(20), 0.5e-1, 1e-13);
  EXPECT_NEAR(probe.fraction_at(30), 0.5, 1e-12);
  EXPECT_NEAR(probe.fraction_at(99), 0.5, 1e-12);  // holds past the end
}

TEST(LearningRateProbe, StopsAtTheDivergenceAndPicksATenthOfTheBestLr) {
  LearningRateProbe probe;
  probe.plan(1.0, 41, 4.0, 10.0, 0.5);  // LR 1e-4 -> 1 of the peak, x1.26 a step
  probe.begin();
  const double edge = 0.02;
  const ProbeRun r = run_probe(probe, edge);
  EXPECT_TRUE(probe.finished());
  EXPECT_LT(r.steps_taken, 41) << "it must stop at the divergence, not run to the end";
  // The best LR lies within a few ramp steps of the edge (the smoothing lags a little); a tenth of
  // it is chosen.
  EXPECT_LE(r.chosen, edge / 10.0 * 1.0001);
  EXPECT_GE(r.chosen, edge / 10.0 / 1.26 / 1.26 / 1.26);
  EXPECT_NE(probe.report().find("diverged at step"), std::string::npos) << probe.report();
  EXPECT_NE(probe.report().find("the run restarts at x"), std::string::npos);
}

TEST(LearningRateProbe, AHigherEdgeGivesAHigherChoice) {
  double previous = 0;
  for (double edge : {0.003, 0.03, 0.3}) {
    LearningRateProbe probe;
    probe.plan(1.0, 41, 4.0, 10.0, 0.5);
    probe.begin();
    const double chosen = run_probe(probe, edge).chosen;
    EXPECT_GT(chosen, previous * 5) << edge;  // a decade up, within the ramp's resolution
    previous = chosen;
  }
}

TEST(LearningRateProbe, ARangeThatNeverDivergesPicksATenthOfItsTop) {
  LearningRateProbe probe;
  probe.plan(0.2, 20, 3.0, 10.0, 0.5);
  probe.begin();
  const ProbeRun r = run_probe(probe, /*edge=*/10.0);
  EXPECT_EQ(r.steps_taken, 20);
  // The last loss answers for the LR of the step before the last.
  EXPECT_NEAR(r.chosen, probe.fraction_at(18) / 10.0, 1e-15);
  EXPECT_NE(probe.report().find("the range ended without a divergence"), std::string::npos);
}

TEST(LearningRateProbe, ANonFiniteStepEndsItAtOnce) {
  LearningRateProbe probe;
  probe.plan(1.0, 20, 3.0, 10.0, 0.5);
  probe.begin();
  EXPECT_TRUE(probe.observe(0, std::numeric_limits<double>::quiet_NaN(), false));
  EXPECT_NEAR(probe.chosen_fraction(), 1e-3 / 10.0, 1e-18);  // the bottom of the range, / 10
  LearningRateProbe later;
  later.plan(1.0, 20, 3.0, 10.0, 0.5);
  later.begin();
  EXPECT_FALSE(later.observe(0, 9.0, true));
  EXPECT_FALSE(later.observe(1, 8.0, true));
  EXPECT_TRUE(later.observe(2, 7.0, false));
  EXPECT_NE(later.report().find("non-finite"), std::string::npos);
}

TEST(LearningRateProbe, NoisyLossesDoNotEndItEarly) {
  // A falling loss with +-0.3 jitter (a small batch) stays within the 0.5 margin of its smoothed best.
  LearningRateProbe probe;
  probe.plan(1.0, 30, 3.0, 10.0, 0.5);
  probe.begin();
  bool done = false;
  int64_t step = 0;
  for (; step < 30 && !done; ++step) done = probe.observe(step, 9.0 - 0.05 * step + (step % 2 ? 0.3 : -0.3), true);
  EXPECT_EQ(step, 30);
}

TEST(LearningRateProbe, ASavedProbeResumesToTheSameChoice) {
  LearningRateProbe straight, first;
  straight.plan(1.0, 41, 4.0, 10.0, 0.5);
  first.plan(1.0, 41, 4.0, 10.0, 0.5);
  straight.begin();
  first.begin();
  const double edge = 0.05;
  auto loss_at = [&](const LearningRateProbe& p, int64_t step) {
    return step == 0 ? 9.0 : loss_after(p.fraction_at(step - 1), edge);
  };
  for (int64_t step = 0; step < 12; ++step) first.observe(step, loss_at(first, step), true);
  LearningRateProbe resumed;
  resumed.from_json(nlohmann::json::parse(first.to_json().dump()));
  EXPECT_TRUE(resumed.active());
  int64_t step = 12;
  while (!resumed.observe(step, loss_at(resumed, step), true)) ++step;
  run_probe(straight, edge);
  EXPECT_EQ(resumed.chosen_fraction(), straight.chosen_fraction());
  EXPECT_EQ(resumed.report(), straight.report());
}

TEST(LearningRateProbe, RejectsNonsensePlans) {
  LearningRateProbe probe;
  EXPECT_THROW(probe.plan(0.0, 20, 3, 10, 0.5), std::exception);
  EXPECT_THROW(probe.plan(1.0, 1, 3, 10, 0.5), std::exception);
  EXPECT_THROW(probe.begin(), std::exception);
  EXPECT_THROW(probe.observe(0, 1.0, true), std::exception);
}

}  // namespace
}  // namespace keel
