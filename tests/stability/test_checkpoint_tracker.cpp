// Good-checkpoint semantics: the guard interval, rollback targets before the onset, the fallback,
// the protected set, forgetting on rollback, and the JSON round trip.
#include <gtest/gtest.h>

#include "stability/checkpoint_tracker.h"

namespace keel {
namespace {

TEST(GoodCheckpointTracker, GoodOnlyAfterCleanGuard) {
  GoodCheckpointTracker t(50);
  t.on_checkpoint(100);
  t.advance(149);
  EXPECT_FALSE(t.is_good(100));  // guard not passed yet
  t.advance(150);
  EXPECT_TRUE(t.is_good(100));
  EXPECT_FALSE(t.is_good(90));  // not a checkpoint
}

TEST(GoodCheckpointTracker, AnomalyInsideGuardMakesItBad) {
  for (int64_t at : {100, 125, 150}) {
    GoodCheckpointTracker t(50);
    t.on_checkpoint(100);
    t.on_anomaly(at);  // step 100 is the first step on the checkpoint's weights
    t.advance(400);
    EXPECT_FALSE(t.is_good(100)) << "anomaly at " << at;
  }
  GoodCheckpointTracker before_and_after(50);
  before_and_after.on_anomaly(99);
  before_and_after.on_checkpoint(100);
  before_and_after.on_anomaly(151);
  before_and_after.advance(400);
  EXPECT_TRUE(before_and_after.is_good(100));
}

TEST(GoodCheckpointTracker, RollbackTargetIsNewestGoodBeforeOnset) {
  GoodCheckpointTracker t(50);
  for (int64_t c : {100, 200, 300}) t.on_checkpoint(c);
  t.on_anomaly(320);
  t.advance(320);
  EXPECT_TRUE(t.is_good(100));
  EXPECT_TRUE(t.is_good(200));
  EXPECT_FALSE(t.is_good(300));
  EXPECT_EQ(t.rollback_target(320), 200);
  EXPECT_EQ(t.rollback_target(200), 100);  // strictly before the onset
  EXPECT_EQ(t.rollback_target(250), 200);
}

TEST(GoodCheckpointTracker, FallbackWhenNoneConfirmedYet) {
  GoodCheckpointTracker t(50);
  t.on_checkpoint(10);
  t.on_checkpoint(20);
  t.on_anomaly(30);
  t.advance(30);
  EXPECT_FALSE(t.is_good(20));
  EXPECT_EQ(t.rollback_target(30), 20);  // nothing went wrong between 20 and the onset

  GoodCheckpointTracker dirty(50);
  dirty.on_checkpoint(10);
  dirty.on_checkpoint(20);
  dirty.on_anomaly(25);
  dirty.on_anomaly(30);
  dirty.advance(30);
  EXPECT_FALSE(dirty.rollback_target(30).has_value());  // 25 lies after both
  EXPECT_EQ(dirty.rollback_target(25), 20);

  GoodCheckpointTracker empty(50);
  empty.on_anomaly(5);
  EXPECT_FALSE(empty.rollback_target(5).has_value());
}

TEST(GoodCheckpointTracker, ProtectedIsNewestGood) {
  GoodCheckpointTracker t(50);
  EXPECT_TRUE(t.protected_steps().empty());
  t.on_checkpoint(100);
  t.advance(120);
  // None good yet: the newest clean checkpoint (the fallback target) is protected.
  EXPECT_EQ(t.protected_steps(), (std::set<int64_t>{100}));
  t.on_checkpoint(200);
  t.advance(260);
  EXPECT_EQ(t.protected_steps(), (std::set<int64_t>{200}));
  t.on_checkpoint(300);
  t.on_anomaly(310);
  t.advance(400);
  EXPECT_EQ(t.protected_steps(), (std::set<int64_t>{200}));  // 300 is bad
}

TEST(GoodCheckpointTracker, RollbackForgetsNewerAndKeepsTargetGood) {
  GoodCheckpointTracker t(50);
  for (int64_t c : {100, 200, 300}) t.on_checkpoint(c);
  t.on_anomaly(320);
  t.advance(320);
  ASSERT_EQ(t.rollback_target(320), 200);
  t.on_rollback(200);
  EXPECT_EQ(t.checkpoints(), (std::set<int64_t>{100, 200}));
  EXPECT_EQ(t.current_step(), 199);
  EXPECT_TRUE(t.is_good(200));  // stays good although the clock went back
  // The anomaly at 320 belonged to the abandoned timeline: a new checkpoint at 300 can be good.
  t.on_checkpoint(300);
  t.advance(350);
  EXPECT_TRUE(t.is_good(300));
}

TEST(GoodCheckpointTracker, RemovedCheckpointIsNeverOffered) {
  GoodCheckpointTracker t(50);
  t.on_checkpoint(100);
  t.on_checkpoint(200);
  t.advance(300);
  t.on_checkpoint_removed(200);
  EXPECT_EQ(t.rollback_target(300), 100);
  EXPECT_FALSE(t.is_good(200));
}

TEST(GoodCheckpointTracker, JsonRoundTrip) {
  GoodCheckpointTracker a(50);
  for (int64_t c : {100, 200, 300}) a.on_checkpoint(c);
  a.on_anomaly(320);
  a.advance(330);
  a.on_rollback(200);
  a.on_anomaly(210);
  a.advance(215);
  GoodCheckpointTracker b(50);
  b.from_json(nlohmann::json::parse(a.to_json().dump()));
  EXPECT_EQ(a.to_json(), b.to_json());
  for (int64_t onset : {150, 210, 250}) EXPECT_EQ(a.rollback_target(onset), b.rollback_target(onset));
  EXPECT_EQ(a.protected_steps(), b.protected_steps());
}

}  // namespace
}  // namespace keel
