// What a restart from the initial state changes (issue 22, "a monitor that rescues real runs"):
// the restarted run trains at restart_lr_backoff x the LR in effect at the failure's onset (below
// the peak when it failed during a warm-up or cooldown), not x the peak, at most two cuts at once;
// with stability.restart_warmup_fraction > 0 (off by default) it also warms up longer (at least
// 2 / (1 - beta2) steps and a share of the run, twice as long on each further restart); and a
// model without normalisation whose failure returns after an LR cut is not cut into uselessness:
// the monitor aborts naming the missing normalisation (or the remedy restart adds it). These run
// with the LR range test off (stability.lr_probe_steps = -1: the fixed cut); the range test that
// replaces the first cut by default is at the end. Synthetic series driven like the trainer
// drives the monitor.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "stability/stability_monitor.h"
#include "synthetic_series.h"

namespace keel {
namespace {

using testing_stability::default_config;
using testing_stability::fixed_cut_config;
using testing_stability::healthy_series;

// The documented defaults with the restart warm-up on (it is off by default, see
// StabilityConfig::restart_warmup_fraction).
StabilityConfig warmup_config() {
  StabilityConfig config = fixed_cut_config();
  config.restart_warmup_fraction = 0.05;
  return config;
}

// A 400-step run of 1,000 tokens a step trained with AdamW beta2 = 0.95.
RunFacts run_facts(int64_t lr_warmup_steps, bool normalized = true) {
  RunFacts facts;
  facts.tokens_per_step = 1000;
  facts.total_steps = 400;
  facts.peak_lr = 3e-2;
  facts.lr_warmup_steps = lr_warmup_steps;
  facts.adam_beta2 = 0.95;
  facts.normalized = normalized;
  return facts;
}

// Drives a monitor like the trainer (checkpoints every 25 steps, restarts go back to step 0);
// `fault` writes the failure into a step's signals given the LR fraction (of the peak) the trainer
// would use and how many restarts happened.
struct Sim {
  StabilityMonitor monitor;
  std::vector<StepSignals> series;
  std::function<void(StepSignals&, double lr_fraction, int restarts)> fault = [](StepSignals&, double, int) {};
  int64_t step = 0;
  int restarts = 0;
  std::vector<MonitorDecision> rollbacks;
  std::vector<StabilityEvent> events;

  Sim(const StabilityConfig& config, const RunFacts& facts, int64_t steps)
      : monitor(config, facts), series(healthy_series(steps, 17)) {
    monitor.on_initial_state();
  }
  // The schedule's LR fraction at `s` (linear warm-up, then flat: enough for these tests) times the
  // monitor's multiplier.
  double lr_fraction(int64_t s) const {
    const int64_t w = monitor.facts().lr_warmup_steps;
    const double scheduled = w > 0 && s < w ? static_cast<double>(s + 1) / static_cast<double>(w) : 1.0;
    return scheduled * monitor.lr_multiplier(s);
  }
  // At most `max_observations` observed steps (a fault that never ends with rollbacks unlimited
  // would loop forever).
  MonitorDecision run_until(int64_t end, int64_t max_observations = 4000) {
    MonitorDecision d;
    for (int64_t n = 0; step < end && n < max_observations; ++n) {
      StepSignals s = series.at(static_cast<size_t>(step));
      fault(s, lr_fraction(step), restarts);
      d = monitor.observe(s);
      events.insert(events.end(), d.events.begin(), d.events.end());
      if (d.action == Action::kApply || d.action == Action::kSkipUpdate) {
        ++step;
        if (step % 25 == 0) monitor.on_checkpoint_saved(step);
      } else if (d.action == Action::kRollback) {
        rollbacks.push_back(d);
        monitor.on_rollback_done(d.rollback_to_step, step);
        restarts += d.restart_from_initial ? 1 : 0;
        step = d.rollback_to_step;
      } else {
        break;
      }
    }
    return d;
  }
};

// Explodes (grad norm above the ceiling, loss above uniform guessing) from step `at` on whenever
// the LR fraction in effect is above `tolerated`.
std::function<void(StepSignals&, double, int)> explodes_above(double tolerated, int64_t at) {
  return [=](StepSignals& s, double lr_fraction, int) {
    if (s.step >= at && lr_fraction > tolerated) {
      s.grad_norm = 150;
      s.loss = 12;
    }
  };
}

TEST(RestartRemedies, AnEarlyFailureWithoutWarmupRestartsWithAWarmupAndALowerLr) {
  StabilityConfig config = warmup_config();
  Sim sim(config, run_facts(/*lr_warmup_steps=*/0), 400);
  sim.fault = explodes_above(0.5, 3);
  sim.run_until(400);
  ASSERT_EQ(sim.rollbacks.size(), 1u);
  const MonitorDecision& r = sim.rollbacks[0];
  EXPECT_TRUE(r.restart_from_initial);
  EXPECT_DOUBLE_EQ(r.lr_scale, 0.3);  // the failure came at the peak: x0.3 of it
  // 2 / (1 - 0.95) = 40 steps (more than 5% of 400): the LR rises linearly from step 0 to step 39,
  // times the cooldown of rollback 1 (x0.5 ramping back to x1 over 100 steps).
  EXPECT_EQ(sim.monitor.restart_warmup_steps(), 40);
  auto cooldown = [](int64_t s) { return 0.5 + 0.5 * std::min(1.0, s / 100.0); };
  for (int64_t s : {0, 19, 39})
    EXPECT_NEAR(sim.monitor.lr_multiplier(s), 0.3 * (s + 1) / 40.0 * cooldown(s), 1e-15) << s;
  EXPECT_NEAR(sim.monitor.lr_multiplier(60), 0.3 * cooldown(60), 1e-15);
  EXPECT_DOUBLE_EQ(sim.monitor.lr_multiplier(300), 0.3);
  EXPECT_NE(r.summary.find("LR x0.15 ramping to x0.3 over 100 steps, warming up from 0 over the first 40 steps"),
            std::string::npos)
      << r.summary;
  bool told = false;
  for (const auto& e : sim.events) {
    if (e.kind != event_kind::kLrTooHigh) continue;
    told = true;
    EXPECT_NE(e.reason.find("warms up over 40 steps (the failed try: 0)"), std::string::npos) << e.reason;
  }
  EXPECT_TRUE(told);
  EXPECT_EQ(sim.step, 400);
}

TEST(RestartRemedies, TheAddedWarmupIsARatioOfTheSchedulesOwn) {
  // The schedule already warms up over 10 steps; the restart's 40-step ramp is what the product of
  // the schedule and the multiplier must give: (s + 1) / 40 at every step of it.
  Sim sim(warmup_config(), run_facts(/*lr_warmup_steps=*/10), 400);
  sim.fault = explodes_above(0.5, 8);  // at step 8 the schedule is at 90% of the peak
  sim.run_until(400);
  ASSERT_EQ(sim.rollbacks.size(), 1u);
  ASSERT_EQ(sim.monitor.restart_warmup_steps(), 40);
  const double scale = sim.monitor.lr_scale();
  EXPECT_DOUBLE_EQ(scale, 0.3 * 0.9);  // x0.3 the LR in effect at the onset (9 / 10 of the peak)
  auto cooldown = [](int64_t s) { return 0.5 + 0.5 * std::min(1.0, s / 100.0); };
  for (int64_t s : {0, 5, 9, 10, 25, 39})
    EXPECT_NEAR(sim.lr_fraction(s), scale * (s + 1) / 40.0 * cooldown(s), 1e-12) << s;
  EXPECT_NEAR(sim.lr_fraction(40), scale * cooldown(40), 1e-12);
  EXPECT_NEAR(sim.lr_fraction(200), scale, 1e-12);
}

TEST(RestartRemedies, AFailureDuringTheWarmupCutsTheLrThatFailedNotThePeak) {
  // Warm-up 40: the failure at step 12 came at 13 / 40 of the peak. The restart trains at x0.3 of
  // that, and the schedule's 40 steps are already as long as the restart asks (no warm-up added,
  // the usual cooldown instead).
  Sim sim(fixed_cut_config(), run_facts(/*lr_warmup_steps=*/40), 400);
  sim.fault = explodes_above(0.3, 12);
  sim.run_until(400);
  ASSERT_GE(sim.rollbacks.size(), 1u);
  EXPECT_DOUBLE_EQ(sim.rollbacks[0].lr_scale, 0.3 * 13.0 / 40.0);
  EXPECT_EQ(sim.monitor.restart_warmup_steps(), 0);
  EXPECT_NE(sim.rollbacks[0].summary.find("ramping to x0.0975"), std::string::npos) << sim.rollbacks[0].summary;
  bool told = false;
  for (const auto& e : sim.events)
    told = told || (e.kind == event_kind::kLrTooHigh &&
                    e.reason.find("x0.3 the LR in effect at the onset (x0.325 of the peak") != std::string::npos);
  EXPECT_TRUE(told);
}

TEST(RestartRemedies, AFailureInTheFirstWarmupStepsCutsAtMostTwoBackoffsDeep) {
  // A failure at step 1 of a 40-step warm-up (5% of the peak) says little about the peak: the
  // restart cuts x0.3 x 0.3, not x0.3 x 0.05.
  Sim sim(fixed_cut_config(), run_facts(/*lr_warmup_steps=*/40), 400);
  sim.fault = [](StepSignals& s, double, int restarts) {
    if (restarts == 0 && s.step >= 1) s.grad_norm = 150;
  };
  sim.run_until(400);
  ASSERT_EQ(sim.rollbacks.size(), 1u);
  EXPECT_NEAR(sim.rollbacks[0].lr_scale, 0.09, 1e-12);
}

TEST(RestartRemedies, ARunThatNeverLearnedIsCutFromTheLrItTrainedAt) {
  // The flat-loss restart's onset is step 0, deep in the warm-up; the run failed at its peak.
  RunFacts facts = run_facts(/*lr_warmup_steps=*/40);
  facts.total_steps = 1000;
  facts.unigram_entropy = 7.0;
  Sim sim(fixed_cut_config(), facts, 1000);
  sim.fault = [](StepSignals& s, double, int restarts) {
    if (restarts == 0) s.loss = 7.1 + 0.02 * static_cast<double>(s.step % 3);
  };
  sim.run_until(1000);
  ASSERT_EQ(sim.rollbacks.size(), 1u);
  EXPECT_TRUE(sim.rollbacks[0].restart_from_initial);
  EXPECT_DOUBLE_EQ(sim.rollbacks[0].lr_scale, 0.3);
  EXPECT_EQ(sim.step, 1000);
}

TEST(RestartRemedies, EveryFurtherRestartWarmsUpLongerAndLower) {
  StabilityConfig config = warmup_config();
  Sim sim(config, run_facts(/*lr_warmup_steps=*/0), 400);
  sim.fault = explodes_above(0.05, 3);  // only below x0.05 of the peak does it survive
  sim.run_until(400);
  ASSERT_GE(sim.rollbacks.size(), 2u);
  // Restart 1: 40 steps at x0.3. Restart 2 fails during that warm-up, so its cut starts from the
  // LR in effect then; its warm-up is twice as long (80 steps, under 30% of 400).
  EXPECT_DOUBLE_EQ(sim.rollbacks[0].lr_scale, 0.3);
  EXPECT_LT(sim.rollbacks[1].lr_scale, 0.3 * 0.3 + 1e-12);
  EXPECT_NE(sim.rollbacks[1].summary.find("warming up from 0 over the first 80 steps"), std::string::npos)
      << sim.rollbacks[1].summary;
  EXPECT_NE(sim.rollbacks[1].summary, sim.rollbacks[0].summary);
  if (sim.rollbacks.size() >= 3) {
    // Capped at 30% of the run.
    EXPECT_NE(sim.rollbacks[2].summary.find("over the first 120 steps"), std::string::npos)
        << sim.rollbacks[2].summary;
  }
  EXPECT_EQ(sim.step, 400);
  EXPECT_LE(sim.monitor.lr_multiplier(399), 0.05);
}

TEST(RestartRemedies, ByDefaultARestartAddsNoWarmupAndKeepsTheCooldown) {
  Sim sim(fixed_cut_config(), run_facts(/*lr_warmup_steps=*/0), 400);
  sim.fault = explodes_above(0.5, 3);
  sim.run_until(400);
  ASSERT_EQ(sim.rollbacks.size(), 1u);
  EXPECT_EQ(sim.monitor.restart_warmup_steps(), 0);
  EXPECT_NE(sim.rollbacks[0].summary.find("LR x0.15 ramping to x0.3 over 100 steps"), std::string::npos)
      << sim.rollbacks[0].summary;
}

TEST(RestartRemedies, StateRoundTripKeepsTheAddedWarmup) {
  Sim sim(warmup_config(), run_facts(0), 400);
  sim.fault = explodes_above(0.5, 3);
  sim.run_until(30);
  ASSERT_EQ(sim.monitor.restart_warmup_steps(), 40);
  StabilityMonitor resumed(warmup_config(), run_facts(0));
  resumed.state_from_json(sim.monitor.state_to_json());
  EXPECT_EQ(resumed.restart_warmup_steps(), 40);
  for (int64_t s : {0, 10, 39, 40, 200}) EXPECT_DOUBLE_EQ(resumed.lr_multiplier(s), sim.monitor.lr_multiplier(s));
  EXPECT_EQ(resumed.state_to_json(), sim.monitor.state_to_json());
}

// A norm-free model: explodes in its warm-up whatever the LR (its weights grow until it does),
// later when the LR is lower.
std::function<void(StepSignals&, double, int)> normfree_explosion() {
  return [](StepSignals& s, double, int restarts) {
    if (s.step >= 24 + 26 * restarts) {
      s.grad_norm = 150;
      s.loss = 12;
    }
  };
}

TEST(RestartRemedies, ANormFreeModelWhoseFailureReturnsAfterAnLrCutAbortsNamingTheNormalisation) {
  Sim sim(fixed_cut_config(), run_facts(/*lr_warmup_steps=*/40, /*normalized=*/false), 400);
  sim.fault = normfree_explosion();
  MonitorDecision d = sim.run_until(400);
  ASSERT_EQ(sim.rollbacks.size(), 1u);  // one LR cut was worth a try
  ASSERT_EQ(d.action, Action::kAbort) << d.abort_message;
  for (const char* needle : {"without normalisation layers", "model.norm = none", "model.norm=pre_ln",
                             "learning rate", "norm-free, train.lr="})
    EXPECT_NE(d.abort_message.find(needle), std::string::npos) << needle << "\n" << d.abort_message;
  // The same failures in a model with normalisation: the LR is cut again instead.
  Sim normed(fixed_cut_config(), run_facts(40, /*normalized=*/true), 400);
  normed.fault = normfree_explosion();
  normed.run_until(60);
  EXPECT_GE(normed.rollbacks.size(), 2u);
}

TEST(RestartRemedies, ANormFreeModelsRemedyRestartAddsNormalisationAtTheParentsLr) {
  StabilityConfig config = fixed_cut_config();
  config.on_repeated_spikes = "remedy_restart";
  Sim sim(config, run_facts(40, /*normalized=*/false), 400);
  sim.fault = normfree_explosion();
  MonitorDecision d = sim.run_until(400);
  ASSERT_EQ(d.action, Action::kRemedyRestart) << d.abort_message;
  EXPECT_DOUBLE_EQ(d.lr_scale, 1.0);  // the LR was not the cause
  EXPECT_NE(d.abort_message.find("without normalisation layers"), std::string::npos) << d.abort_message;
}

TEST(RestartRemedies, OnRepeatedSpikesRollbackStillRollsBackANormFreeModel) {
  StabilityConfig config = fixed_cut_config();
  config.on_repeated_spikes = "rollback";
  Sim sim(config, run_facts(40, /*normalized=*/false), 400);
  sim.fault = normfree_explosion();
  const MonitorDecision d = sim.run_until(400, /*max_observations=*/300);
  EXPECT_NE(d.action, Action::kAbort) << d.abort_message;
  EXPECT_GE(sim.rollbacks.size(), 2u);
}

// The default: the first failure before anything good existed starts an LR range test
// (stability/lr_probe.h) from the initial state, then a restart at a tenth of the best LR it saw.
TEST(RestartRemedies, AnEarlyFailureIsMeasuredByAnLrRangeTestThenRestartedAtTheLrItFound) {
  Sim sim(default_config(), run_facts(/*lr_warmup_steps=*/0), 400);
  const double tolerated = 0.05;  // the model explodes above 5% of the peak LR
  sim.fault = explodes_above(tolerated, 3);
  sim.run_until(400);
  ASSERT_EQ(sim.rollbacks.size(), 2u);
  EXPECT_TRUE(sim.rollbacks[0].restart_from_initial);
  EXPECT_NE(sim.rollbacks[0].summary.find("an LR range test over the first 40 steps (LR x0.001 rising to x1"),
            std::string::npos)
      << sim.rollbacks[0].summary;
  const MonitorDecision& measured = sim.rollbacks[1];
  EXPECT_TRUE(measured.restart_from_initial);
  EXPECT_EQ(measured.skip_batches, 0);
  // 40 steps over 3 decades: x1.194 a step. The best smoothed loss is at most a few steps below the
  // edge; a tenth of it is chosen.
  EXPECT_LE(measured.lr_scale, tolerated / 10);
  EXPECT_GE(measured.lr_scale, tolerated / 10 / std::pow(1.194, 4));
  EXPECT_DOUBLE_EQ(sim.monitor.lr_scale(), measured.lr_scale);
  // The range test's end is not a failure: one rollback of the budget was used.
  EXPECT_EQ(sim.monitor.policy().rollback_history().size(), 1u);
  int probes = 0, too_high = 0;
  for (const StabilityEvent& e : sim.events) {
    probes += e.kind == event_kind::kLrProbe ? 1 : 0;
    too_high += e.kind == event_kind::kLrTooHigh ? 1 : 0;
    if (e.kind == event_kind::kLrProbe) {
      EXPECT_EQ(e.action, "rollback");
      EXPECT_NE(e.reason.find("diverged at step"), std::string::npos) << e.reason;
    }
  }
  EXPECT_EQ(probes, 1);
  EXPECT_EQ(too_high, 1);
  // The measured LR is reached over Adam's untuned warm-up (40 steps at beta2 0.95), then held.
  EXPECT_EQ(sim.monitor.restart_warmup_steps(), 40);
  EXPECT_NEAR(sim.monitor.lr_multiplier(19), measured.lr_scale * 20 / 40.0, 1e-15);
  EXPECT_DOUBLE_EQ(sim.monitor.lr_multiplier(200), measured.lr_scale);
  EXPECT_EQ(sim.step, 400);
}

TEST(RestartRemedies, TheRangeTestRampsTheLrGeometricallyWhateverTheSchedulesWarmup) {
  Sim sim(default_config(), run_facts(/*lr_warmup_steps=*/100), 400);
  sim.fault = explodes_above(0.2, 3);  // fails in the warm-up at step 20 (LR x0.21 of the peak)
  sim.run_until(400, /*max_observations=*/23);  // the failure, its rollback, a few probe steps
  ASSERT_EQ(sim.rollbacks.size(), 1u);
  for (int64_t s : {0, 10, 39}) {
    const double want = 0.21 * std::pow(10.0, -3.0 * (1.0 - s / 39.0));
    EXPECT_NEAR(sim.lr_fraction(s), want, want * 1e-12) << s;
  }
}

TEST(RestartRemedies, TheRangeTestRunsOnceThenAReturningFailureIsCut) {
  Sim sim(default_config(), run_facts(/*lr_warmup_steps=*/0), 400);
  // Explodes above x0.05 early on, and from step 150 on also at any LR above x0.001.
  sim.fault = [](StepSignals& s, double lr_fraction, int) {
    if ((s.step >= 3 && lr_fraction > 0.05) || (s.step >= 150 && lr_fraction > 0.001)) {
      s.grad_norm = 150;
      s.loss = 12;
    }
  };
  sim.run_until(400);
  ASSERT_GE(sim.rollbacks.size(), 3u);
  const double measured = sim.rollbacks[1].lr_scale;
  int probes = 0;
  for (const StabilityEvent& e : sim.events) probes += e.kind == event_kind::kLrProbe ? 1 : 0;
  EXPECT_EQ(probes, 1);
  // The third rollback (a restart: nothing was confirmed good after the probe) cuts the measured LR.
  EXPECT_NEAR(sim.rollbacks[2].lr_scale, measured * 0.3, 1e-15);
}

TEST(RestartRemedies, AModelWithoutNormalisationGetsTheFixedCutNotTheRangeTest) {
  Sim sim(default_config(), run_facts(/*lr_warmup_steps=*/0, /*normalized=*/false), 400);
  sim.fault = explodes_above(0.5, 3);
  sim.run_until(400);
  ASSERT_EQ(sim.rollbacks.size(), 1u);
  EXPECT_DOUBLE_EQ(sim.rollbacks[0].lr_scale, 0.3);
  for (const StabilityEvent& e : sim.events) EXPECT_NE(e.kind, event_kind::kLrProbe);
}

TEST(RestartRemedies, ARunResumedInTheMiddleOfTheRangeTestDecidesTheSame) {
  auto fault = explodes_above(0.05, 3);
  Sim straight(default_config(), run_facts(0), 400);
  straight.fault = fault;
  straight.run_until(400);
  Sim first(default_config(), run_facts(0), 400);
  first.fault = fault;
  first.run_until(400, /*max_observations=*/6 + 12);  // the failure (steps 0-5), then 12 probe steps
  ASSERT_EQ(first.rollbacks.size(), 1u);
  Sim resumed(default_config(), run_facts(0), 400);
  resumed.fault = fault;
  resumed.monitor.state_from_json(nlohmann::json::parse(first.monitor.state_to_json().dump()));
  resumed.step = first.step;
  resumed.restarts = first.restarts;
  EXPECT_EQ(resumed.monitor.lr_multiplier(resumed.step), first.monitor.lr_multiplier(first.step));
  resumed.run_until(400);
  ASSERT_EQ(resumed.rollbacks.size(), 1u);
  EXPECT_EQ(resumed.rollbacks[0].lr_scale, straight.rollbacks[1].lr_scale);
  EXPECT_EQ(resumed.monitor.state_to_json().dump(), straight.monitor.state_to_json().dump());
}

}  // namespace
}  // namespace keel
