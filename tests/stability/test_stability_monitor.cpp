// The monitor facade end to end on synthetic runs driven the way the trainer drives it
// (checkpoint C saved after C completed steps, rollbacks restore C and continue with step C).
#include <gtest/gtest.h>

#include <set>

#include <functional>
#include <limits>

#include "common/check.h"
#include "common/exit_codes.h"
#include "stability/stability_monitor.h"
#include "synthetic_series.h"

namespace keel {
namespace {

using testing_stability::default_config;
using testing_stability::healthy_series;

struct Sim {
  StabilityMonitor monitor;
  std::vector<StepSignals> series;  // healthy values by step; replays see the same values
  // Fault written into step `s` on the pass after `rollbacks` rollbacks.
  std::function<void(StepSignals& s, int rollbacks)> fault = [](StepSignals&, int) {};
  int64_t checkpoint_every = 100;
  int64_t step = 0;
  int rollbacks = 0;
  std::vector<MonitorDecision> not_applied;  // every decision other than a plain apply
  std::vector<StabilityEvent> events;
  std::vector<double> loss_seen, grad_seen;  // every observed value, in order

  Sim(const StabilityConfig& c, std::vector<StepSignals> s) : monitor(c), series(std::move(s)) {}

  MonitorDecision step_once() {
    StepSignals s = series.at(static_cast<size_t>(step));
    fault(s, rollbacks);
    loss_seen.push_back(s.loss);
    grad_seen.push_back(s.grad_norm);
    MonitorDecision d = monitor.observe(s);
    events.insert(events.end(), d.events.begin(), d.events.end());
    if (d.action != Action::kApply) not_applied.push_back(d);
    if (d.action == Action::kApply || d.action == Action::kSkipUpdate) {
      int64_t completed = step + 1;
      if (completed % checkpoint_every == 0) monitor.on_checkpoint_saved(completed);
      step = completed;
    } else if (d.action == Action::kRollback) {
      monitor.on_rollback_done(d.rollback_to_step, step);
      step = d.rollback_to_step;
      ++rollbacks;
    }
    return d;
  }
  // Runs until `end`, an abort or a remedy restart; returns the last decision.
  MonitorDecision run_until(int64_t end) {
    MonitorDecision d;
    while (step < end) {
      d = step_once();
      if (d.action == Action::kAbort || d.action == Action::kRemedyRestart) break;
    }
    return d;
  }
};

// Loss 3.0 + a repeating {-0.1, -0.05, 0, 0.05, 0.1} (median ~3.0, MAD ~0.074): a flat run for
// exact sustained-spike tests.
std::vector<StepSignals> cyclic_series(int64_t steps) {
  auto series = healthy_series(steps, 9);
  for (auto& s : series) s.loss = 3.0 + 0.05 * static_cast<double>(s.step % 5 - 2);
  return series;
}

// A loss spike as unstable training makes it: the loss jumps and the gradients explode with it.
void real_spike(StepSignals& s) {
  s.loss += 2;
  s.grad_norm *= 30;
}

class MonitorByMethod : public ::testing::TestWithParam<const char*> {};

TEST_P(MonitorByMethod, NoFalsePositivesOver5000HealthySteps) {
  for (uint32_t seed : {21u, 22u}) {
    Sim sim(default_config(GetParam()), healthy_series(5000, seed));
    for (int64_t t = 0; t < 5000; ++t) {
      MonitorDecision d = sim.step_once();
      ASSERT_EQ(d.action, Action::kApply) << "seed " << seed << " step " << t << ": "
                                          << (d.events.empty() ? "" : d.events[0].reason);
      ASSERT_DOUBLE_EQ(d.clip_scale, 1.0);
      ASSERT_DOUBLE_EQ(sim.monitor.lr_multiplier(t), 1.0);
    }
    EXPECT_TRUE(sim.events.empty());
    EXPECT_EQ(sim.monitor.protected_checkpoints(), (std::set<int64_t>{4900}));
  }
}

TEST_P(MonitorByMethod, GradSpikeSkippedWithEvidenceThenRecovers) {
  Sim sim(default_config(GetParam()), healthy_series(3200, 4));
  sim.fault = [](StepSignals& s, int) { if (s.step == 3000) s.grad_norm *= 20; };
  sim.run_until(3000);
  ASSERT_TRUE(sim.events.empty());
  nlohmann::json baseline_before = sim.monitor.grad_detector().to_json();
  MonitorDecision d = sim.step_once();
  EXPECT_EQ(d.action, Action::kSkipUpdate);
  EXPECT_EQ(sim.monitor.grad_detector().to_json(), baseline_before);  // the spike is not learned
  EXPECT_DOUBLE_EQ(d.clip_scale, 0.5);
  EXPECT_EQ(sim.monitor.state(), MonitorState::kSuspect);
  ASSERT_EQ(d.events.size(), 1u);
  const StabilityEvent& e = d.events[0];
  EXPECT_EQ(e.kind, "grad_explosion");
  EXPECT_EQ(e.action, "skip_update");
  EXPECT_EQ(e.step, 3000);
  // Evidence: exactly the last 32 observed values, the spike last.
  std::vector<double> last_loss(sim.loss_seen.end() - 32, sim.loss_seen.end());
  std::vector<double> last_grad(sim.grad_seen.end() - 32, sim.grad_seen.end());
  EXPECT_EQ(e.loss_window, last_loss);
  EXPECT_EQ(e.grad_norm_window, last_grad);
  EXPECT_NE(e.reason.find("suspect"), std::string::npos) << e.reason;

  sim.run_until(3010);
  EXPECT_EQ(sim.monitor.state(), MonitorState::kSuspect);
  MonitorDecision back = sim.step_once();  // 10th clean step
  EXPECT_EQ(sim.monitor.state(), MonitorState::kHealthy);
  ASSERT_EQ(back.events.size(), 1u);
  EXPECT_EQ(back.events[0].kind, "recovered");
  EXPECT_EQ(back.events[0].onset_step, 3000);
  sim.run_until(3200);
  EXPECT_EQ(sim.not_applied.size(), 1u);
}

TEST_P(MonitorByMethod, LossJumpRollsBackToGoodCheckpointWithCooldown) {
  Sim sim(default_config(GetParam()), healthy_series(3600, 8));
  // A real spike: the loss jumps and the gradients explode with it (a loss-only jump is one odd batch).
  sim.fault = [](StepSignals& s, int rollbacks) {
    if (s.step == 3000 && rollbacks == 0) {
      s.loss += 2;
      s.grad_norm *= 30;
    }
  };
  sim.run_until(3000);
  MonitorDecision d = sim.step_once();
  ASSERT_EQ(d.action, Action::kRollback);
  EXPECT_EQ(d.rollback_to_step, 2900);
  EXPECT_EQ(d.onset_step, 3000);
  EXPECT_EQ(d.skip_batches, 3000 + 1 - 2900);  // the batches of steps 2900 .. 3000
  ASSERT_EQ(d.events.size(), 2u);
  EXPECT_EQ(d.events[0].kind, "grad_explosion");
  EXPECT_EQ(d.events[1].kind, "loss_spike");
  EXPECT_EQ(d.events[1].action, "rollback");
  EXPECT_EQ(d.events[0].checkpoint_step, 2900);
  EXPECT_EQ(d.events[0].loss_window.size(), StabilityMonitor::kEvidenceWindow);
  // Restored with the checkpoint's baseline: verdicts continue at once, no re-warm-up.
  EXPECT_EQ(sim.step, 2900);
  EXPECT_EQ(sim.monitor.loss_detector().baseline().count(), 100);
  EXPECT_DOUBLE_EQ(sim.monitor.lr_multiplier(2900), 0.5);
  EXPECT_DOUBLE_EQ(sim.monitor.lr_multiplier(2950), 0.75);
  EXPECT_DOUBLE_EQ(sim.monitor.lr_multiplier(3000), 1.0);
  EXPECT_EQ(sim.monitor.policy().rollback_history().size(), 1u);
  sim.run_until(3600);
  EXPECT_EQ(sim.not_applied.size(), 1u);
  EXPECT_EQ(sim.monitor.protected_checkpoints(), (std::set<int64_t>{3500}));
}

INSTANTIATE_TEST_SUITE_P(Methods, MonitorByMethod, ::testing::Values("median_mad", "ema"));

TEST(StabilityMonitor, SustainedRiseRollsBackToBeforeItsOnset) {
  Sim sim(default_config(), cyclic_series(3400));
  // A held rise (z < 5, but 0.3 > margin 0.2) that the gradients corroborate once: instability,
  // not a change of data.
  sim.fault = [](StepSignals& s, int rollbacks) {
    if (s.step >= 3005 && rollbacks == 0) s.loss = 3.3;
    if (s.step == 3010 && rollbacks == 0) s.grad_norm *= 30;
  };
  MonitorDecision d = sim.run_until(3400);
  ASSERT_EQ(sim.not_applied.size(), 2u);  // the explosion at 3010 (skipped), then the rollback
  EXPECT_EQ(sim.not_applied[0].action, Action::kSkipUpdate);
  const MonitorDecision& r = sim.not_applied[1];
  EXPECT_EQ(r.action, Action::kRollback);
  // The fast average crosses the margin on the third elevated step: the stretch begins at 3007.
  EXPECT_EQ(r.onset_step, 3007);
  EXPECT_EQ(r.rollback_to_step, 2900);  // 3000 was saved inside the guard of the onset
  EXPECT_EQ(r.skip_batches, 3007 + 1 - 2900);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].kind, "sustained_spike");
  EXPECT_EQ(r.events[0].step, 3007 + 19);
  EXPECT_EQ(d.action, Action::kApply);
  // The grad explosion at 3010 was skipped on its own (suspect), then recovered.
  EXPECT_EQ(sim.monitor.policy().rollback_history().size(), 1u);
}

TEST(StabilityMonitor, HeldRiseWithoutCorroborationIsALevelShiftNotASpike) {
  Sim sim(default_config(), cyclic_series(3400));
  sim.fault = [](StepSignals& s, int) { if (s.step >= 3005) s.loss = 3.3; };
  sim.run_until(3400);
  EXPECT_EQ(sim.rollbacks, 0);
  EXPECT_TRUE(sim.events.empty());
  EXPECT_NEAR(sim.monitor.loss_detector().baseline().center(), 3.3, 1e-9);
}

TEST(StabilityMonitor, LevelShiftSeedsTheBaselinesWithEachStepOnce) {
  Sim sim(default_config(), cyclic_series(3400));
  sim.fault = [](StepSignals& s, int) { if (s.step >= 3005) s.loss = 3.3; };
  MonitorDecision d;
  while (sim.step < 3400 && d.baseline_shift.empty()) d = sim.step_once();
  ASSERT_FALSE(d.baseline_shift.empty()) << "no level shift was followed";
  // The step that concluded the shift is in the stretch that re-seeded the baselines: it must not
  // be learned a second time as an ordinary healthy step.
  const nlohmann::json state = sim.monitor.state_to_json();
  ASSERT_FALSE(state.at("history").empty());
  std::set<int64_t> steps;
  for (const auto& sample : state.at("history")) {
    EXPECT_TRUE(steps.insert(sample.at(0).get<int64_t>()).second) << "step " << sample.at(0) << " learned twice";
  }
}

TEST(StabilityMonitor, ObserveModeKeepsItsMemoryBoundedThroughALastingRise) {
  StabilityConfig c = default_config();
  c.mode = "observe";
  Sim sim(c, cyclic_series(6000));
  sim.fault = [](StepSignals& s, int) { if (s.step >= 3005) s.loss = 6.0; };  // large: judged sustained, never followed
  sim.run_until(6000);
  EXPECT_EQ(sim.rollbacks, 0);
  EXPECT_FALSE(sim.events.empty());
  const nlohmann::json state = sim.monitor.state_to_json();
  EXPECT_LE(state.at("elevated_samples").size(), static_cast<size_t>(c.window));
  EXPECT_LE(state.at("loss_detector").at("stretch").size(), static_cast<size_t>(c.window));
}

TEST(StabilityMonitor, CheckpointInsideSustainedStretchNeverBecomesGood) {
  StabilityConfig c = default_config();
  c.rollback_on_sustained = false;
  c.suspect_steps_to_rollback = 100;  // let the episode run out instead of rolling back
  Sim sim(c, cyclic_series(3300));
  sim.checkpoint_every = 10;
  sim.fault = [](StepSignals& s, int) {
    if (s.step >= 3005 && s.step < 3030) s.loss = 3.3;
    if (s.step == 3006) s.grad_norm *= 30;  // corroborates the stretch
  };
  sim.run_until(3300);
  EXPECT_EQ(sim.rollbacks, 0);
  // The explosion at 3006 (skipped), then the stretch (from 3007, the fast average's lag) judged
  // sustained from 3026 to 3029.
  ASSERT_EQ(sim.not_applied.size(), 5u);
  EXPECT_EQ(sim.not_applied[0].events.at(0).kind, "grad_explosion");
  EXPECT_EQ(sim.not_applied[1].events.at(0).kind, "sustained_spike");
  EXPECT_FALSE(sim.monitor.tracker().is_good(3010));  // saved after the onset at 3005
  EXPECT_FALSE(sim.monitor.tracker().is_good(3020));
  EXPECT_TRUE(sim.monitor.tracker().is_good(2950));
  EXPECT_TRUE(sim.monitor.tracker().is_good(3100));
}

TEST(StabilityMonitor, WarmupSuppressesVerdictsButNonFiniteIsAlwaysSkipped) {
  Sim sim(default_config(), healthy_series(200, 2));
  sim.fault = [](StepSignals& s, int) {
    if (s.step == 3) s.loss = std::numeric_limits<double>::quiet_NaN();
    if (s.step == 20) s.grad_norm *= 20;
    if (s.step == 25) s.loss += 3;
  };
  sim.run_until(200);
  ASSERT_EQ(sim.not_applied.size(), 1u);
  EXPECT_EQ(sim.not_applied[0].action, Action::kSkipUpdate);
  EXPECT_EQ(sim.not_applied[0].events.at(0).kind, "nonfinite");
  EXPECT_EQ(sim.not_applied[0].events.at(0).step, 3);
  EXPECT_EQ(sim.monitor.state(), MonitorState::kHealthy);
}

TEST(StabilityMonitor, RepeatedSpikesAbortAfterMaxRollbacks) {
  Sim sim(default_config(), healthy_series(3200, 6));
  sim.fault = [](StepSignals& s, int) { if (s.step == 3000) real_spike(s); };  // every pass
  MonitorDecision d = sim.run_until(3200);
  ASSERT_EQ(d.action, Action::kAbort);
  EXPECT_EQ(sim.rollbacks, 3);
  EXPECT_EQ(sim.monitor.state(), MonitorState::kAborted);
  for (const char* needle : {"exit code 3", "3 (max_rollbacks = 3)", "at step 3000 (onset 3000)",
                             "loss_spike", "Last good checkpoint: step 2900", "scaled-embed",
                             "learning rate is too high"}) {
    EXPECT_NE(d.abort_message.find(needle), std::string::npos) << needle << "\n" << d.abort_message;
  }
  EXPECT_EQ(d.events.at(0).action, "abort");
  EXPECT_EQ(kExitStabilityAbort, 3);  // the code the abort message quotes
  MonitorDecision again = sim.monitor.observe(sim.series[3001]);
  EXPECT_EQ(again.action, Action::kAbort);
  EXPECT_EQ(again.abort_message, d.abort_message);
}

TEST(StabilityMonitor, RemedyRestartOnlyWhenEarly) {
  StabilityConfig c = default_config();
  c.on_repeated_spikes = "remedy_restart";
  Sim early(c, healthy_series(1000, 6));
  early.fault = [](StepSignals& s, int) { if (s.step == 700) real_spike(s); };
  MonitorDecision d = early.run_until(1000);
  ASSERT_EQ(d.action, Action::kRemedyRestart);
  EXPECT_NE(d.abort_message.find("restart from scratch"), std::string::npos) << d.abort_message;
  early.monitor.on_rollback_done(0, 700);
  EXPECT_EQ(early.monitor.state(), MonitorState::kHealthy);
  // The remedy replaces the cooldown; the LR stays as diagnosed (the child run gets d.lr_scale).
  EXPECT_DOUBLE_EQ(early.monitor.lr_multiplier(0), early.monitor.lr_scale());
  EXPECT_DOUBLE_EQ(d.lr_scale, early.monitor.lr_scale() * c.lr_backoff);
  EXPECT_TRUE(early.monitor.protected_checkpoints().empty());

  Sim late(c, healthy_series(2700, 6));
  late.fault = [](StepSignals& s, int) { if (s.step == 2500) real_spike(s); };
  EXPECT_EQ(late.run_until(2700).action, Action::kAbort);
}

TEST(StabilityMonitor, EarlyRollbackFallsBackToUnconfirmedCheckpoint) {
  Sim sim(default_config(), healthy_series(400, 3));
  sim.checkpoint_every = 20;
  sim.fault = [](StepSignals& s, int rollbacks) {
    if (s.step >= 30 && s.step <= 32 && rollbacks == 0) s.grads_finite = false;
  };
  sim.run_until(400);
  ASSERT_EQ(sim.rollbacks, 1);
  const MonitorDecision& r = sim.not_applied.at(2);
  EXPECT_EQ(r.action, Action::kRollback);
  EXPECT_EQ(r.rollback_to_step, 20);  // not confirmed good, but clean up to the onset
  EXPECT_EQ(r.onset_step, 30);
  EXPECT_EQ(r.skip_batches, 11);
  EXPECT_EQ(sim.not_applied.size(), 3u);
}

TEST(StabilityMonitor, StateJsonRoundTripGivesIdenticalDecisions) {
  for (const char* method : {"median_mad", "ema"}) {
    auto series = healthy_series(4000, 13);
    auto fault = [](StepSignals& s, int rollbacks) {
      if (s.step == 1200) s.grad_norm *= 30;
      if (s.step == 2450) s.loss = std::numeric_limits<double>::quiet_NaN();
      if (s.step == 2600) s.grad_norm *= 25;
      if (s.step == 3000 && rollbacks == 0) {
        s.loss += 2;
        s.grad_norm *= 30;
      }
    };
    Sim a(default_config(method), series);
    a.fault = fault;
    a.run_until(2455);  // mid-episode: suspect after the NaN at 2450
    ASSERT_EQ(a.monitor.state(), MonitorState::kSuspect) << method;
    Sim b(default_config(method), series);
    b.fault = fault;
    b.step = a.step;
    b.monitor.state_from_json(nlohmann::json::parse(a.monitor.state_to_json().dump()));
    ASSERT_EQ(a.monitor.state_to_json(), b.monitor.state_to_json()) << method;
    while (a.step < 4000) {
      int64_t step = a.step;
      MonitorDecision x = a.step_once();
      MonitorDecision y = b.step_once();
      ASSERT_EQ(x.action, y.action) << method << " step " << step;
      ASSERT_EQ(x.clip_scale, y.clip_scale);
      ASSERT_EQ(x.rollback_to_step, y.rollback_to_step);
      ASSERT_EQ(x.skip_batches, y.skip_batches);
      ASSERT_EQ(x.events.size(), y.events.size());
      ASSERT_EQ(a.monitor.verdict_hash(step), b.monitor.verdict_hash(step)) << method << " " << step;
    }
    EXPECT_EQ(a.rollbacks, 1) << method;
    EXPECT_EQ(a.monitor.state_to_json().dump(), b.monitor.state_to_json().dump()) << method;
  }
}

TEST(StabilityMonitor, ResumeFromCheckpointStateMatchesUninterruptedRun) {
  // The trainer captures the state while saving checkpoint C, before on_checkpoint_saved(C).
  auto series = healthy_series(2600, 17);
  Sim a(default_config(), series);
  a.run_until(2499);
  a.step_once();  // completes step 2499 and saves checkpoint 2500 ...
  Sim replay(default_config(), series);
  replay.run_until(2499);
  replay.monitor.observe(series[2499]);
  nlohmann::json saved = replay.monitor.state_to_json();  // ... with this state in it
  StabilityMonitor resumed(default_config());
  resumed.state_from_json(nlohmann::json::parse(saved.dump()));
  resumed.on_checkpoint_saved(2500);
  EXPECT_EQ(resumed.state_to_json().dump(), a.monitor.state_to_json().dump());
  EXPECT_EQ(resumed.protected_checkpoints(), a.monitor.protected_checkpoints());
}

TEST(StabilityMonitor, VerdictHashDiffersWhenRanksDisagree) {
  auto series = healthy_series(300, 1);
  StabilityMonitor a(default_config()), b(default_config());
  for (int64_t t = 0; t < 300; ++t) {
    a.observe(series[t]);
    StepSignals s = series[t];
    if (t == 299) s.loss += 1e-9;  // one rank saw a different value
    b.observe(s);
    if (t < 299) ASSERT_EQ(a.verdict_hash(t), b.verdict_hash(t)) << t;
  }
  EXPECT_NE(a.verdict_hash(299), b.verdict_hash(299));
}

TEST(StabilityMonitor, DisabledOnlySkipsNonFinite) {
  StabilityConfig c = default_config();
  c.enabled = false;
  Sim sim(c, healthy_series(3100, 5));
  sim.fault = [](StepSignals& s, int) {
    if (s.step == 3000) s.grad_norm *= 50;
    if (s.step == 3050) s.grad_norm = std::numeric_limits<double>::infinity();
  };
  sim.run_until(3100);
  ASSERT_EQ(sim.not_applied.size(), 1u);
  EXPECT_EQ(sim.not_applied[0].action, Action::kSkipUpdate);
  EXPECT_EQ(sim.not_applied[0].events.at(0).step, 3050);
}

TEST(StabilityMonitor, MisuseIsAnError) {
  StabilityConfig bad = default_config();
  bad.window = 1;
  EXPECT_THROW(StabilityMonitor{bad}, ConfigError);

  Sim sim(default_config(), healthy_series(3100, 8));
  EXPECT_THROW(sim.monitor.on_rollback_done(0, 10), KeelError);  // nothing pending
  sim.run_until(3000);
  StepSignals s = sim.series[3000];
  s.loss += 2;
  s.grad_norm *= 30;
  ASSERT_EQ(sim.monitor.observe(s).action, Action::kRollback);
  EXPECT_THROW(sim.monitor.observe(sim.series[3001]), KeelError);  // rollback not done
}

}  // namespace
}  // namespace keel
