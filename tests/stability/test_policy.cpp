// The healthy/suspect/rollback state machine on hand-made detections.
#include <gtest/gtest.h>

#include "common/check.h"
#include "stability/policy.h"

namespace keel {
namespace {

Detection anomaly(int64_t step, const std::string& kind = "grad_explosion", double z = 8.0,
                  int64_t onset = -1) {
  Detection d;
  d.anomaly = true;
  d.kind = kind;
  d.step = step;
  d.z = z;
  d.onset_step = onset >= 0 ? onset : step;
  d.absolute = true;  // e.g. the grad-norm ceiling: harm in itself (see GradientOnlyEpisodeIsAShift)
  return d;
}

// Drives a policy with one call per step; `tick` advances with every call.
struct Driver {
  StabilityPolicy policy;
  int64_t tick = 0;
  bool have_target = true;
  explicit Driver(const StabilityConfig& c) : policy(c) {}

  PolicyOutcome clean(int64_t step) { return observe(step, {}); }
  PolicyOutcome bad(int64_t step, const std::string& kind = "grad_explosion", double z = 8.0,
                    int64_t onset = -1) {
    return observe(step, {anomaly(step, kind, z, onset)});
  }
  PolicyOutcome observe(int64_t step, std::vector<Detection> anomalies) {
    PolicyInput in;
    in.step = step;
    in.tick = ++tick;
    in.anomalies = std::move(anomalies);
    in.can_roll_back = [this](int64_t) { return have_target; };
    return policy.observe(in);
  }
  // Healthy run up to a rollback at `step` (3 consecutive anomalies), then the rollback is done.
  PolicyOutcome rollback_at(int64_t step) {
    bad(step);
    bad(step + 1);
    PolicyOutcome out = bad(step + 2);
    if (out.action == Action::kRollback) policy.on_rollback_done();
    return out;
  }
};

TEST(StabilityPolicy, HealthySuspectHealthy) {
  StabilityConfig c;
  Driver d(c);
  PolicyOutcome ok = d.clean(100);
  EXPECT_EQ(ok.action, Action::kApply);
  EXPECT_EQ(ok.state, MonitorState::kHealthy);
  EXPECT_DOUBLE_EQ(ok.clip_scale, 1.0);

  PolicyOutcome s = d.bad(101);
  EXPECT_EQ(s.action, Action::kSkipUpdate);
  EXPECT_EQ(s.state, MonitorState::kSuspect);
  EXPECT_DOUBLE_EQ(s.clip_scale, c.suspect_clip_scale);
  EXPECT_EQ(s.onset_step, 101);

  for (int64_t t = 102; t < 102 + c.suspect_recover_steps - 1; ++t) {
    PolicyOutcome o = d.clean(t);
    EXPECT_EQ(o.action, Action::kApply);
    EXPECT_EQ(o.state, MonitorState::kSuspect);
    EXPECT_DOUBLE_EQ(o.clip_scale, c.suspect_clip_scale);  // tighter clipping while suspect
  }
  PolicyOutcome back = d.clean(102 + c.suspect_recover_steps - 1);
  EXPECT_EQ(back.state, MonitorState::kHealthy);
  EXPECT_TRUE(back.recovered);
  EXPECT_EQ(back.onset_step, 101);
  EXPECT_DOUBLE_EQ(back.clip_scale, 1.0);
}

TEST(StabilityPolicy, RollbackAfterKConsecutiveAnomaliesReturnsOnset) {
  StabilityConfig c;  // K = 3
  Driver d(c);
  EXPECT_EQ(d.bad(500).action, Action::kSkipUpdate);
  EXPECT_EQ(d.bad(501).action, Action::kSkipUpdate);
  PolicyOutcome r = d.bad(502);
  EXPECT_EQ(r.action, Action::kRollback);
  EXPECT_EQ(r.state, MonitorState::kRollback);
  EXPECT_EQ(r.onset_step, 500);
  EXPECT_NE(r.reason.find("3 consecutive"), std::string::npos) << r.reason;
  EXPECT_THROW(d.clean(503), KeelError);  // the trainer must finish the rollback first
  d.policy.on_rollback_done();
  EXPECT_EQ(d.policy.state(), MonitorState::kHealthy);
  EXPECT_EQ(d.policy.rollbacks_in_window(d.tick), 1);
}

TEST(StabilityPolicy, InterleavedAnomaliesDoNotEscalate) {
  StabilityConfig c;
  Driver d(c);
  for (int64_t t = 0; t < 40; t += 2) {
    EXPECT_EQ(d.bad(t).action, Action::kSkipUpdate) << t;
    EXPECT_EQ(d.clean(t + 1).action, Action::kApply) << t;
  }
  EXPECT_EQ(d.policy.state(), MonitorState::kSuspect);
  EXPECT_EQ(d.policy.episode_onset(), 0);
}

TEST(StabilityPolicy, NonFiniteIsAlwaysSkipped) {
  StabilityConfig c;
  Driver d(c);
  PolicyOutcome o = d.bad(3, "nonfinite", 0.0);
  EXPECT_EQ(o.action, Action::kSkipUpdate);
  EXPECT_EQ(o.state, MonitorState::kSuspect);
}

TEST(StabilityPolicy, SustainedSpikeRollsBackAtOnce) {
  StabilityConfig c;
  Driver d(c);
  PolicyOutcome r = d.bad(720, "sustained_spike", 3.0, /*onset=*/701);
  EXPECT_EQ(r.action, Action::kRollback);
  EXPECT_EQ(r.onset_step, 701);

  c.rollback_on_sustained = false;
  Driver lenient(c);
  EXPECT_EQ(lenient.bad(720, "sustained_spike", 3.0, 701).action, Action::kSkipUpdate);
}

TEST(StabilityPolicy, SevereLossSpikeRollsBackAtOnceOnlyWithAGradientAnomaly) {
  StabilityConfig c;  // loss_z_threshold 6
  Driver d(c);
  EXPECT_EQ(d.observe(900, {anomaly(900, "loss_spike", 11.0), anomaly(900)}).action, Action::kSkipUpdate);
  Driver severe(c);
  PolicyOutcome r = severe.observe(900, {anomaly(900, "loss_spike", 12.5), anomaly(900, "grad_explosion")});
  EXPECT_EQ(r.action, Action::kRollback);
  EXPECT_NE(r.reason.find("severe"), std::string::npos) << r.reason;
  // The same loss alone may be one odd batch: skipped, not rolled back.
  Driver alone(c);
  EXPECT_EQ(alone.bad(900, "loss_spike", 12.5).action, Action::kSkipUpdate);
}

TEST(StabilityPolicy, GradientOnlyEpisodeIsAShiftNotARollback) {
  StabilityConfig c;
  Driver d(c);
  Detection relative = anomaly(500);
  relative.absolute = false;  // high against its own baseline only
  EXPECT_EQ(d.observe(500, {relative}).action, Action::kSkipUpdate);
  relative.step = 501;
  EXPECT_EQ(d.observe(501, {relative}).action, Action::kSkipUpdate);
  relative.step = 502;
  PolicyOutcome out = d.observe(502, {relative});
  EXPECT_EQ(out.action, Action::kApply);
  EXPECT_TRUE(out.gradient_shift);
  EXPECT_EQ(out.onset_step, 500);
  EXPECT_EQ(d.policy.state(), MonitorState::kHealthy);
  EXPECT_TRUE(d.policy.rollback_history().empty());
  // With a loss anomaly in the episode it escalates as before.
  Driver e(c);
  relative.step = 600;
  e.observe(600, {relative});
  e.observe(601, {anomaly(601, "loss_spike")});
  EXPECT_EQ(e.observe(602, {anomaly(602)}).action, Action::kRollback);
}

TEST(StabilityPolicy, PassiveModesNeverRollBack) {
  for (const char* mode : {"skip_only", "clip_only", "observe"}) {
    StabilityConfig c;
    c.mode = mode;
    Driver d(c);
    const Action expected = std::string(mode) == "skip_only" ? Action::kSkipUpdate : Action::kApply;
    for (int64_t t = 900; t < 920; ++t) {
      Detection relative = anomaly(t, "grad_explosion", 20.0);
      relative.absolute = false;  // against the baseline
      PolicyOutcome out = d.observe(t, {relative});
      ASSERT_EQ(out.action, expected) << mode << " " << t;
      ASSERT_EQ(out.state, MonitorState::kHealthy);
    }
    EXPECT_EQ(d.bad(920, "nonfinite").action, Action::kSkipUpdate) << mode;
    Detection sustained = anomaly(921, "sustained_spike", 3.0, 901);
    sustained.absolute = false;
    EXPECT_EQ(d.observe(921, {sustained}).action, expected) << mode;
    EXPECT_TRUE(d.policy.rollback_history().empty());
  }
}

TEST(StabilityPolicy, SkipOnlyAppliesAnAbsoluteVerdictAfterSuspectStepsSkips) {
  // A collapsed model has a loss above uniform guessing at every step: skipping every update
  // would freeze it there, so skip_only skips suspect_steps_to_rollback (3) and then applies.
  StabilityConfig c;
  c.mode = "skip_only";
  Driver d(c);
  for (int64_t t = 10; t < 13; ++t) EXPECT_EQ(d.bad(t, "loss_spike").action, Action::kSkipUpdate) << t;
  PolicyOutcome applied = d.bad(13, "loss_spike");
  EXPECT_EQ(applied.action, Action::kApply);
  EXPECT_NE(applied.reason.find("anomalous step 4 in a row"), std::string::npos) << applied.reason;
  EXPECT_NE(applied.reason.find("at most 3 in a row"), std::string::npos) << applied.reason;
  EXPECT_EQ(d.bad(14, "loss_spike").action, Action::kApply);
  // A clean step ends the streak: the next absolute verdict is skipped again.
  EXPECT_EQ(d.clean(15).action, Action::kApply);
  EXPECT_EQ(d.bad(16, "loss_spike").action, Action::kSkipUpdate);
  // A non-finite update is skipped however long the streak.
  for (int64_t t = 17; t < 22; ++t) d.bad(t, "loss_spike");
  EXPECT_EQ(d.bad(22, "nonfinite").action, Action::kSkipUpdate);
}

TEST(StabilityPolicy, RestartsCountAgainstTheRollbackBudget) {
  StabilityConfig c;  // max_rollbacks 3, on_repeated_spikes abort
  Driver d(c);
  for (int i = 0; i < 3; ++i) {
    PolicyOutcome out = d.policy.order_restart(300, ++d.tick, "never learned");
    ASSERT_EQ(out.action, Action::kRollback);
    EXPECT_EQ(out.onset_step, 0);
    d.policy.on_rollback_done();
  }
  PolicyOutcome last = d.policy.order_restart(300, ++d.tick, "never learned");
  EXPECT_EQ(last.action, Action::kAbort);
  EXPECT_NE(last.reason.find("never learned"), std::string::npos);
  Driver e(c);
  EXPECT_EQ(e.policy.abort("flat").action, Action::kAbort);
  EXPECT_EQ(e.policy.state(), MonitorState::kAborted);
}

TEST(StabilityPolicy, RollbacksCountedWithinWindowThenAbort) {
  StabilityConfig c;  // N = 3 within 1000 executed steps
  Driver d(c);
  for (int i = 0; i < 3; ++i) {
    for (int k = 0; k < 50; ++k) d.clean(1000 + 100 * i + k);
    EXPECT_EQ(d.rollback_at(1050 + 100 * i).action, Action::kRollback) << i;
  }
  EXPECT_EQ(d.policy.rollbacks_in_window(d.tick), 3);
  PolicyOutcome a = d.rollback_at(1400);
  EXPECT_EQ(a.action, Action::kAbort);
  EXPECT_EQ(a.state, MonitorState::kAborted);
  EXPECT_NE(a.reason.find("max_rollbacks = 3"), std::string::npos) << a.reason;
  EXPECT_EQ(d.clean(1500).action, Action::kAbort);  // aborted is final
}

TEST(StabilityPolicy, OldRollbacksLeaveTheWindow) {
  StabilityConfig c;
  c.rollback_window_steps = 100;
  Driver d(c);
  for (int i = 0; i < 6; ++i) {
    for (int k = 0; k < 100; ++k) d.clean(0);  // 100 executed steps between rollbacks
    EXPECT_EQ(d.rollback_at(500).action, Action::kRollback) << i;  // same step: a replay
    EXPECT_EQ(d.policy.rollbacks_in_window(d.tick), 1);
  }
}

TEST(StabilityPolicy, RemedyRestartWhenConfiguredAndEarly) {
  StabilityConfig c;
  c.on_repeated_spikes = "remedy_restart";
  c.max_rollbacks = 1;
  Driver early(c);
  EXPECT_EQ(early.rollback_at(300).action, Action::kRollback);
  PolicyOutcome r = early.rollback_at(350);
  EXPECT_EQ(r.action, Action::kRemedyRestart);
  EXPECT_EQ(early.policy.remedy_restarts(), 1);
  early.policy.on_rollback_done();
  EXPECT_EQ(early.policy.rollbacks_in_window(early.tick), 0);  // fresh budget after the restart
  EXPECT_EQ(early.rollback_at(300).action, Action::kRollback);
  PolicyOutcome second = early.rollback_at(320);
  EXPECT_EQ(second.action, Action::kAbort);  // only one remedy restart
  EXPECT_NE(second.reason.find("already restarted once"), std::string::npos) << second.reason;

  Driver late(c);
  EXPECT_EQ(late.rollback_at(2500).action, Action::kRollback);
  PolicyOutcome a = late.rollback_at(2600);
  EXPECT_EQ(a.action, Action::kAbort);
  EXPECT_NE(a.reason.find("remedy_restart_before_step"), std::string::npos) << a.reason;
}

TEST(StabilityPolicy, RepeatedRollbacksWhenConfigured) {
  StabilityConfig c;
  c.on_repeated_spikes = "rollback";
  Driver d(c);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(d.rollback_at(400 + 10 * i).action, Action::kRollback) << i;
}

TEST(StabilityPolicy, NoCheckpointToRollBackTo) {
  StabilityConfig c;
  Driver d(c);
  d.have_target = false;
  EXPECT_EQ(d.rollback_at(100).action, Action::kAbort);

  c.on_repeated_spikes = "remedy_restart";
  Driver r(c);
  r.have_target = false;
  PolicyOutcome o = r.rollback_at(100);
  EXPECT_EQ(o.action, Action::kRemedyRestart);
  EXPECT_NE(o.reason.find("no checkpoint"), std::string::npos) << o.reason;
}

TEST(StabilityPolicy, JsonRoundTripContinuesIdentically) {
  StabilityConfig c;
  Driver a(c);
  a.rollback_at(100);
  a.bad(200);
  a.clean(201);
  Driver b(c);
  b.policy.from_json(nlohmann::json::parse(a.policy.to_json().dump()));
  b.tick = a.tick;
  EXPECT_EQ(a.policy.to_json(), b.policy.to_json());
  for (int64_t t = 202; t < 230; ++t) {
    bool anomalous = t % 3 == 0;
    PolicyOutcome x = anomalous ? a.bad(t) : a.clean(t);
    PolicyOutcome y = anomalous ? b.bad(t) : b.clean(t);
    ASSERT_EQ(x.action, y.action) << t;
    ASSERT_EQ(x.state, y.state) << t;
    ASSERT_EQ(x.onset_step, y.onset_step) << t;
  }
}

TEST(StabilityPolicy, Names) {
  EXPECT_STREQ(to_string(Action::kSkipUpdate), "skip_update");
  EXPECT_STREQ(to_string(Action::kRemedyRestart), "remedy_restart");
  EXPECT_STREQ(to_string(MonitorState::kSuspect), "suspect");
}

}  // namespace
}  // namespace keel
