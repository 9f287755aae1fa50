// JobState unit tests: layout refusal, rank assignment and duplicates, heartbeat timeout (with a
// fake clock, so no test sleeps through a timeout), two-phase commit, persistence across restarts.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "coordinator/job_state.h"
#include "tests/coordinator/test_util.h"

namespace keel::coord {
namespace {

using testing::run_concurrently;
using testing::TempDir;

// A steady clock the test moves by hand.
struct FakeClock {
  SteadyClock::time_point t = SteadyClock::now();
  void advance(double seconds) {
    t += std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(seconds));
  }
};

JobOptions options(int world, int dp, int tp, FakeClock* clock = nullptr) {
  JobOptions o;
  o.job_id = "job";
  o.world_size = world;
  o.dp_size = dp;
  o.tp_size = tp;
  if (clock) o.clock = [clock] { return clock->t; };
  return o;
}

WorkerInfo worker(const std::string& host, int local_rank, int requested_rank = -1) {
  WorkerInfo w;
  w.host = host;
  w.local_rank = local_rank;
  w.pid = 1000 + local_rank;
  w.requested_rank = requested_rank;
  return w;
}

SteadyClock::time_point in_seconds(double s) {
  return SteadyClock::now() +
         std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(s));
}

std::vector<Assignment> register_all(JobState& job, const std::vector<WorkerInfo>& workers) {
  return run_concurrently(static_cast<int>(workers.size()),
                          [&](int i) { return job.register_worker("job", workers[i], in_seconds(10)); });
}

JobErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const JobError& e) {
    return e.code();
  }
  ADD_FAILURE() << "expected a JobError";
  return JobErrorCode::kUnavailable;
}

TEST(Layout, RefusesLayoutThatDoesNotMatchWorld) {
  try {
    JobState job(options(4, 3, 2));
    FAIL() << "layout accepted";
  } catch (const KeelError& e) {
    EXPECT_NE(std::string(e.what()).find("dp=3 x tp=2 = 6 does not match world size 4"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(Layout(4, 0, 3), KeelError);  // dp inferred, but 4 is not divisible by 3
  EXPECT_EQ(Layout(8, 0, 2).dp_size(), 4);
}

TEST(Layout, GroupsForDp2Tp2) {
  Layout l(4, 2, 2);
  const auto g = l.groups_of(3);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0].name, "world");
  EXPECT_EQ(g[0].ranks, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(g[1].name, "dp_1");
  EXPECT_EQ(g[1].ranks, (std::vector<int>{1, 3}));
  EXPECT_EQ(g[2].name, "tp_1");
  EXPECT_EQ(g[2].ranks, (std::vector<int>{2, 3}));
  EXPECT_TRUE(l.is_shard_writer(1));
  EXPECT_FALSE(l.is_shard_writer(2));
}

TEST(JobState, AssignsRanksInHostLocalRankOrder) {
  JobState job(options(4, 2, 2));
  const auto a = register_all(job, {worker("b", 1), worker("a", 1), worker("b", 0), worker("a", 0)});
  EXPECT_EQ(a[3].rank, 0);  // a:0
  EXPECT_EQ(a[1].rank, 1);  // a:1
  EXPECT_EQ(a[2].rank, 2);  // b:0
  EXPECT_EQ(a[0].rank, 3);  // b:1
  EXPECT_EQ(a[0].dp_rank, 1);
  EXPECT_EQ(a[0].tp_rank, 1);
  EXPECT_EQ(job.snapshot().phase, JobPhase::kRunning);
  for (const auto& x : a) EXPECT_EQ(x.generation, 1);
}

TEST(JobState, HonoursRequestedRanksAndFillsTheRest) {
  JobState job(options(3, 3, 1));
  const auto a = register_all(job, {worker("a", 0, 2), worker("b", 0), worker("c", 0, 0)});
  EXPECT_EQ(a[0].rank, 2);
  EXPECT_EQ(a[1].rank, 1);
  EXPECT_EQ(a[2].rank, 0);
}

TEST(JobState, RejectsDuplicateAndBadRegistrations) {
  JobState job(options(2, 2, 1));
  auto first = std::async(std::launch::async,
                          [&] { return job.register_worker("job", worker("a", 0, 1), in_seconds(10)); });
  while (job.snapshot().registered < 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(code_of([&] { job.register_worker("job", worker("b", 0, 1), in_seconds(1)); }),
            JobErrorCode::kAlreadyExists);
  EXPECT_EQ(code_of([&] { job.register_worker("job", worker("a", 0), in_seconds(1)); }),
            JobErrorCode::kAlreadyExists);
  EXPECT_EQ(code_of([&] { job.register_worker("job", worker("b", 0, 2), in_seconds(1)); }),
            JobErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { job.register_worker("other", worker("b", 0), in_seconds(1)); }),
            JobErrorCode::kNotFound);
  WorkerInfo wrong_world = worker("b", 0);
  wrong_world.requested_world_size = 8;
  EXPECT_EQ(code_of([&] { job.register_worker("job", wrong_world, in_seconds(1)); }),
            JobErrorCode::kInvalidArgument);
  WorkerInfo bad_id = worker("b", 0);
  bad_id.nccl_id_proposals["world"] = "short";
  EXPECT_EQ(code_of([&] { job.register_worker("job", bad_id, in_seconds(1)); }),
            JobErrorCode::kInvalidArgument);
  // A valid second worker completes the rendezvous; a third finds the job running.
  const Assignment b = job.register_worker("job", worker("b", 0), in_seconds(10));
  EXPECT_EQ(b.rank, 0);
  EXPECT_EQ(first.get().rank, 1);
  EXPECT_EQ(code_of([&] { job.register_worker("job", worker("c", 0), in_seconds(1)); }),
            JobErrorCode::kFailedPrecondition);
}

TEST(JobState, RendezvousTimeoutLeavesTheRendezvous) {
  JobState job(options(2, 2, 1));
  EXPECT_EQ(code_of([&] { job.register_worker("job", worker("a", 0), in_seconds(0.2)); }),
            JobErrorCode::kDeadlineExceeded);
  EXPECT_EQ(job.snapshot().registered, 0);
  // The same worker may try again.
  const auto a = register_all(job, {worker("a", 0), worker("b", 0)});
  EXPECT_EQ(a[0].rank, 0);
}

TEST(JobState, NcclIdsComeFromTheGroupsFirstRankOrAreRandom) {
  JobState job(options(4, 2, 2));
  std::vector<WorkerInfo> w{worker("h", 0), worker("h", 1), worker("h", 2), worker("h", 3)};
  w[0].nccl_id_proposals["world"] = std::string(kNcclIdBytes, 'W');
  w[2].nccl_id_proposals["tp"] = std::string(kNcclIdBytes, 'T');  // rank 2 leads tp_1
  const auto a = register_all(job, w);
  std::map<std::string, std::string> ids;
  for (const auto& x : a) {
    for (const auto& g : x.groups) {
      EXPECT_EQ(g.nccl_unique_id.size(), kNcclIdBytes);
      if (ids.count(g.name)) {
        EXPECT_EQ(ids[g.name], g.nccl_unique_id) << g.name;  // same for all members
      }
      ids[g.name] = g.nccl_unique_id;
    }
  }
  EXPECT_EQ(ids["world"], std::string(kNcclIdBytes, 'W'));
  EXPECT_EQ(ids["tp_1"], std::string(kNcclIdBytes, 'T'));
  EXPECT_NE(ids["tp_0"], ids["dp_0"]);  // random, distinct
}

TEST(JobState, HeartbeatTimeoutDeclaresTheRankDead) {
  FakeClock clock;
  JobState job(options(2, 2, 1, &clock));
  register_all(job, {worker("alpha", 0), worker("beta", 0)});
  clock.advance(3);
  EXPECT_EQ(job.heartbeat("job", 0, 1, 7).phase, JobPhase::kRunning);
  EXPECT_EQ(job.check_heartbeats(), 0);
  clock.advance(3);  // rank 1 silent for 6 s > 5 s, rank 0 for 3 s
  EXPECT_EQ(job.check_heartbeats(), 1);
  const JobReport r = job.heartbeat("job", 0, 1, 8);
  EXPECT_EQ(r.phase, JobPhase::kFailed);
  EXPECT_NE(r.message.find("rank 1"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("beta"), std::string::npos) << r.message;
  const auto snap = job.snapshot();
  EXPECT_FALSE(snap.ranks[1].alive);
  EXPECT_TRUE(snap.ranks[0].alive);
  EXPECT_EQ(snap.ranks[0].last_step, 8);
}

TEST(JobState, StaleGenerationAndRestartAfterFailure) {
  JobState job(options(1, 1, 1));
  register_all(job, {worker("a", 0)});
  EXPECT_EQ(code_of([&] { job.heartbeat("job", 0, 2, 0); }), JobErrorCode::kFailedPrecondition);
  EXPECT_EQ(code_of([&] { job.heartbeat("job", 1, 1, 0); }), JobErrorCode::kInvalidArgument);
  job.shutdown_rank("job", 0, 1, "crashed", 3);
  EXPECT_EQ(job.snapshot().phase, JobPhase::kFailed);
  EXPECT_NE(job.snapshot().message.find("exited with code 3: crashed"), std::string::npos);
  const auto a = register_all(job, {worker("a", 0)});  // the restarted worker: next generation
  EXPECT_EQ(a[0].generation, 2);
  EXPECT_EQ(code_of([&] { job.heartbeat("job", 0, 1, 0); }), JobErrorCode::kFailedPrecondition);
  EXPECT_EQ(job.heartbeat("job", 0, 2, 0).phase, JobPhase::kRunning);
}

TEST(JobState, CompletesWhenAllRanksShutDownNormally) {
  JobState job(options(2, 1, 2));
  register_all(job, {worker("a", 0), worker("a", 1)});
  job.shutdown_rank("job", 1, 1, "done", 0);
  EXPECT_EQ(job.snapshot().phase, JobPhase::kStopping);
  job.shutdown_rank("job", 0, 1, "done", 0);
  EXPECT_EQ(job.snapshot().phase, JobPhase::kCompleted);
  EXPECT_EQ(job.wait_finished(std::chrono::seconds(0)), JobPhase::kCompleted);
}

ShardReport shard(int rank, int64_t step, const std::string& name) {
  ShardReport s;
  s.rank = rank;
  s.generation = 1;
  s.step = step;
  s.shard_name = name;
  s.bytes = 100;
  s.crc32 = 42;
  return s;
}

TEST(JobState, CommitsOnlyAfterAllTpWriters) {
  JobState job(options(4, 2, 2));
  register_all(job, {worker("h", 0), worker("h", 1), worker("h", 2), worker("h", 3)});
  const auto now = SteadyClock::now();
  EXPECT_FALSE(job.commit_shard("job", shard(0, 10, "tp0"), now));
  EXPECT_EQ(job.latest_committed("job"), -1);
  EXPECT_EQ(code_of([&] { job.commit_shard("job", shard(2, 10, "x"), now); }),
            JobErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { job.commit_shard("job", shard(0, 10, "other"), now); }),
            JobErrorCode::kAlreadyExists);
  EXPECT_FALSE(job.commit_shard("job", shard(0, 10, "tp0"), now));  // an identical retry is fine
  EXPECT_TRUE(job.commit_shard("job", shard(1, 10, "tp1"), now));
  EXPECT_EQ(job.latest_committed("job"), 10);
  EXPECT_TRUE(job.commit_shard("job", shard(0, 10, "tp0"), now));  // retry after the commit
  // A writer that waits learns of the commit when the last writer reports.
  auto waiter = std::async(std::launch::async,
                           [&] { return job.commit_shard("job", shard(0, 20, "tp0"), in_seconds(10)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(job.commit_shard("job", shard(1, 20, "tp1"), now));
  EXPECT_TRUE(waiter.get());
  EXPECT_EQ(job.latest_committed("job"), 20);
  EXPECT_EQ(job.committed_steps(), (std::vector<int64_t>{10, 20}));
}

// A sharded optimizer's per-DP-rank files (issue 26): every rank writes a shard, and the step commits
// only once all world_size ranks reported it; the reports of one step must agree on that layout.
TEST(JobState, CommitsEveryDpRanksShardsOnlyAfterAllRanks) {
  JobState job(options(4, 2, 2));
  register_all(job, {worker("h", 0), worker("h", 1), worker("h", 2), worker("h", 3)});
  const auto now = SteadyClock::now();
  auto every = [](int rank, int64_t step) {
    ShardReport s = shard(rank, step, "tp" + std::to_string(rank % 2) + ".dp" + std::to_string(rank / 2));
    s.every_dp_rank = true;
    return s;
  };
  EXPECT_FALSE(job.commit_shard("job", every(0, 10), now));
  EXPECT_FALSE(job.commit_shard("job", every(1, 10), now)) << "the TP writers alone do not commit";
  EXPECT_EQ(code_of([&] { job.commit_shard("job", shard(2, 10, "tp0"), now); }), JobErrorCode::kInvalidArgument)
      << "a DP rank > 0 writes only every-rank shards";
  EXPECT_EQ(code_of([&] { job.commit_shard("job", shard(3, 10, "tp1"), now); }), JobErrorCode::kInvalidArgument);
  EXPECT_FALSE(job.commit_shard("job", every(2, 10), now));
  EXPECT_EQ(job.latest_committed("job"), -1);
  EXPECT_TRUE(job.commit_shard("job", every(3, 10), now));
  EXPECT_EQ(job.latest_committed("job"), 10);
  // A step begun as TP shards does not take every-rank reports, and the other way round.
  EXPECT_FALSE(job.commit_shard("job", shard(0, 20, "tp0"), now));
  EXPECT_EQ(code_of([&] { job.commit_shard("job", every(1, 20), now); }), JobErrorCode::kInvalidArgument);
  EXPECT_TRUE(job.commit_shard("job", shard(1, 20, "tp1"), now));
  EXPECT_EQ(job.latest_committed("job"), 20);
  EXPECT_TRUE(Layout(4, 2, 2).is_shard_writer(2, /*every_dp_rank=*/true));
  EXPECT_EQ(Layout(4, 2, 2).shard_writers(true), 4);
  EXPECT_EQ(Layout(4, 2, 2).shard_writers(false), 2);
}

// The commit rule with the disk visible (issue 28): a report of a step with no files on disk is
// refused; a step every writer reported is agreed (rank 0 may seal it) but recorded only once sealed.
TEST(JobState, WithTheDiskVisibleOnlySealedStepsAreRecorded) {
  TempDir dir;
  std::set<int64_t> written, sealed;  // the fake checkpoint folder
  JobOptions o = options(2, 1, 2);
  o.state_dir = dir.path();
  o.disk.save_missing = [&](int64_t step) { return written.count(step) ? "" : "no folder"; };
  o.disk.sealed = [&](int64_t step) { return sealed.count(step) > 0; };
  JobState job(o);
  register_all(job, {worker("h", 0), worker("h", 1)});
  const auto now = SteadyClock::now();
  EXPECT_EQ(code_of([&] { job.commit_shard("job", shard(0, 123456, "tp0"), now); }),
            JobErrorCode::kFailedPrecondition);
  written.insert(10);
  EXPECT_FALSE(job.commit_shard("job", shard(0, 10, "tp0"), now));
  EXPECT_TRUE(job.commit_shard("job", shard(1, 10, "tp1"), now));  // agreed: rank 0 seals now
  EXPECT_TRUE(job.commit_shard("job", shard(0, 10, "tp0"), now));  // a retry hears the same
  job.record_sealed();
  EXPECT_EQ(job.latest_committed("job"), -1) << "agreed, but not sealed on disk";
  sealed.insert(10);
  job.record_sealed();
  EXPECT_EQ(job.latest_committed("job"), 10);
  // Step 20 is agreed and never sealed; the next report (step 30) records nothing new for it.
  written.insert(20);
  written.insert(30);
  EXPECT_FALSE(job.commit_shard("job", shard(0, 20, "tp0"), now));
  EXPECT_TRUE(job.commit_shard("job", shard(1, 20, "tp1"), now));
  EXPECT_FALSE(job.commit_shard("job", shard(0, 30, "tp0"), now));
  EXPECT_EQ(job.committed_steps(), (std::vector<int64_t>{10}));
  // The job fails and restarts: step 20, never sealed, is forgotten; a new save of it must be
  // reported by every writer again.
  job.shutdown_rank("job", 1, 1, "crash", 1);
  register_all(job, {worker("h", 0), worker("h", 1)});
  ShardReport again_20 = shard(0, 20, "tp0");
  again_20.generation = 2;
  EXPECT_FALSE(job.commit_shard("job", again_20, now));
  // A restarted coordinator knows only the sealed step.
  JobState again(o);
  EXPECT_EQ(again.committed_steps(), (std::vector<int64_t>{10}));
}

TEST(JobState, LatestCommittedAndGenerationSurviveRestart) {
  TempDir dir;
  {
    JobOptions o = options(1, 1, 1);
    o.state_dir = dir.path();
    JobState job(o);
    register_all(job, {worker("a", 0)});
    EXPECT_TRUE(job.commit_shard("job", shard(0, 5, "s"), SteadyClock::now()));
  }
  JobOptions o = options(1, 1, 1);
  o.state_dir = dir.path();
  JobState again(o);
  EXPECT_EQ(again.latest_committed("job"), 5);
  EXPECT_EQ(again.snapshot().generation, 2);
  o.job_id = "someone-else";
  EXPECT_THROW(JobState{o}, KeelError);  // a state dir belongs to one job
}

TEST(JobState, RecordsMetricsAndEvents) {
  JobState job(options(1, 1, 1));
  register_all(job, {worker("a", 0)});
  job.record_metrics("job", 0, 1, {{1, {{"loss", 3.0}}}, {2, {{"loss", 2.5}}}},
                     {{0, 2, "spike", "{}", "skip"}});
  const auto snap = job.snapshot();
  EXPECT_EQ(snap.ranks[0].metrics_steps_received, 2u);
  EXPECT_EQ(snap.ranks[0].events_received, 1u);
  EXPECT_EQ(snap.ranks[0].last_values.at("loss"), 2.5);
  EXPECT_EQ(snap.ranks[0].last_step, 2);
  ASSERT_EQ(job.recent_events().size(), 1u);
  EXPECT_EQ(job.recent_events()[0].action, "skip");
}

}  // namespace
}  // namespace keel::coord
