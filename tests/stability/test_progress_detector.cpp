// ProgressDetector on synthetic loss curves: a run stuck at the unigram level is a flat_loss
// failure, a slow but falling run is only a warning, a plateau is "stalled", a validation loss
// that rises while training does not is "val_rising", and a rewind re-arms the checks.
#include <gtest/gtest.h>

#include <cmath>

#include "stability/progress_detector.h"

namespace keel {
namespace {

RunFacts facts(double entropy = 7.0) {
  RunFacts f;
  f.tokens_per_step = 1000;
  f.total_steps = 1000;
  f.unigram_entropy = entropy;
  f.vocab_size = 8192;
  return f;
}

// 9.0 falling exponentially to `floor` with time constant tau, plus a small deterministic wiggle.
double curve(int64_t t, double floor, double tau) {
  return floor + (9.0 - floor) * std::exp(-static_cast<double>(t) / tau) + 0.03 * std::sin(0.7 * t);
}

TEST(ProgressDetector, AutoThresholdsFollowTheRunLength) {
  ProgressDetector p(StabilityConfig{}, facts());
  EXPECT_EQ(p.flat_after_steps(), 300);  // 30% of 1000 steps
  EXPECT_EQ(p.stall_steps(), 250);       // 25% of the run
  StabilityConfig c;
  c.flat_after_tokens = 50'000;
  c.stall_tokens = 400'000;
  ProgressDetector q(c, facts());
  EXPECT_EQ(q.flat_after_steps(), 50);
  EXPECT_EQ(q.stall_steps(), 400);
  RunFacts warm = facts();
  warm.lr_warmup_steps = 200;  // still warming up at 30%: judged at twice the warm-up
  EXPECT_EQ(ProgressDetector(StabilityConfig{}, warm).flat_after_steps(), 400);
  RunFacts short_run = facts();
  short_run.total_steps = 20;  // a smoke run: 30% would be 6 steps, too few tokens to judge
  EXPECT_EQ(ProgressDetector(StabilityConfig{}, short_run).flat_after_steps(), 250);  // 250k tokens
  short_run.tokens_per_step = 100'000;  // a big batch: still at least 100 updates
  EXPECT_EQ(ProgressDetector(StabilityConfig{}, short_run).flat_after_steps(), 100);
}

TEST(ProgressDetector, AShortRunStillAboveTheEntropyIsNotJudged) {
  RunFacts short_run = facts(7.0);
  short_run.total_steps = 20;
  short_run.lr_warmup_steps = 5;
  ProgressDetector p(StabilityConfig{}, short_run);
  for (int64_t t = 0; t < 20; ++t) EXPECT_EQ(p.observe_train(t, curve(t, 7.5, 50)).kind, "") << t;
}

TEST(ProgressDetector, StuckAtTheUnigramLevelIsAFlatFailure) {
  ProgressDetector p(StabilityConfig{}, facts(7.0));
  int fired = 0;
  for (int64_t t = 0; t < 1000; ++t) {
    Detection d = p.observe_train(t, curve(t, 7.15, 15));  // collapsed: never below 7.0
    if (d.kind == event_kind::kFlatLoss) {
      ++fired;
      EXPECT_TRUE(d.anomaly);
      EXPECT_EQ(t, 300);
      EXPECT_DOUBLE_EQ(d.baseline, 7.0);
      EXPECT_NE(d.reason.find("unigram entropy"), std::string::npos) << d.reason;
    }
  }
  EXPECT_EQ(fired, 1);  // once per timeline
}

TEST(ProgressDetector, HealthyRunBelowTheEntropyIsQuiet) {
  ProgressDetector p(StabilityConfig{}, facts(7.0));
  for (int64_t t = 0; t < 1000; ++t) {
    Detection d = p.observe_train(t, curve(t, 5.5, 150));
    ASSERT_TRUE(d.kind.empty()) << t << ": " << d.reason;
  }
}

TEST(ProgressDetector, SlowButFallingIsAWarningNotAFailure) {
  ProgressDetector p(StabilityConfig{}, facts(7.0));
  bool warned = false;
  for (int64_t t = 0; t < 400; ++t) {
    Detection d = p.observe_train(t, 9.0 - 0.005 * t);  // 7.5 at step 300 and still falling
    if (d.kind == event_kind::kFlatLoss) {
      warned = true;
      EXPECT_FALSE(d.anomaly);
      EXPECT_NE(d.reason.find("too low"), std::string::npos) << d.reason;
    }
  }
  EXPECT_TRUE(warned);
}

TEST(ProgressDetector, PlateauIsStalledOnce) {
  StabilityConfig c;
  ProgressDetector p(c, facts(0));  // no entropy: only the stall check
  std::vector<int64_t> stalled;
  for (int64_t t = 0; t < 1000; ++t) {
    const double loss = t < 300 ? curve(t, 3.0, 60) : 3.0 + 0.03 * std::sin(0.7 * t);
    if (p.observe_train(t, loss).kind == event_kind::kStalled) stalled.push_back(t);
  }
  ASSERT_FALSE(stalled.empty());
  EXPECT_GT(stalled.front(), 300 + 200);  // needs a whole stall window of plateau
  EXPECT_LE(stalled.size(), 2u);          // at most once per window
  ProgressDetector q(c, facts(0));
  for (int64_t t = 0; t < 1000; ++t) ASSERT_TRUE(q.observe_train(t, 9.0 - 0.004 * t).kind.empty()) << t;
}

TEST(ProgressDetector, ValidationRisingWhileTrainingFallsIsReportedOnce) {
  StabilityConfig c;  // 3 rising evaluations, 0.05 in all
  ProgressDetector p(c, facts());
  int64_t t = 0;
  auto train_to = [&](int64_t end) {
    for (; t < end; ++t) p.observe_train(t, 4.0 - 0.001 * t);
  };
  std::vector<std::string> kinds;
  for (double val : {4.0, 3.9, 3.95, 4.0, 4.1, 4.2, 4.3}) {
    train_to(t + 50);
    kinds.push_back(p.observe_val(t, val).kind);
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"", "", "", "", event_kind::kValRising, "", ""}));
  // Rising together with the training loss (divergence is the spike detectors' business): nothing.
  ProgressDetector q(c, facts());
  for (int i = 0; i < 5; ++i) {
    for (int k = 0; k < 50; ++k, ++t) q.observe_train(t, 3.0 + 0.01 * t);
    EXPECT_TRUE(q.observe_val(t, 3.0 + 0.1 * i).kind.empty());
  }
}

TEST(ProgressDetector, RewindReArmsAndStateRoundTrips) {
  ProgressDetector p(StabilityConfig{}, facts(7.0));
  for (int64_t t = 0; t <= 300; ++t) p.observe_train(t, 7.2);
  ProgressDetector copy(StabilityConfig{}, facts(7.0));
  copy.from_json(p.to_json());
  EXPECT_EQ(copy.to_json(), p.to_json());
  p.on_rewind(0);
  bool again = false;
  for (int64_t t = 0; t <= 300; ++t) again = again || p.observe_train(t, 7.2).anomaly;
  EXPECT_TRUE(again);
}

}  // namespace
}  // namespace keel
