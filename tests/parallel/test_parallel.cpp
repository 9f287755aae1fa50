// Torch-free unit tests of the parallel layer: launcher environment parsing, the dp x tp layout and
// group membership (world of one, and a threaded fake world of 4 and 6), the world-of-one
// communicator, 16-bit float conversion and the "parallel" config section.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/check.h"
#include "common/config.h"
#include "parallel/half_convert.h"
#include "parallel/parallel_config.h"
#include "parallel/process_groups.h"
#include "parallel/rank_env.h"
#include "tests/parallel/thread_world.h"

namespace keel::parallel {
namespace {

// ---- rank_env ----

using Env = std::map<std::string, std::string>;

RankEnv parse(const Env& env) {
  return parse_rank_env([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(RankEnv, DefaultsToWorldOfOne) {
  RankEnv env = parse({});
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.local_rank, 0);
  EXPECT_EQ(env.source, "default");
}

TEST(RankEnv, OpenMpiWinsOverSlurmAndTorchrun) {
  RankEnv env = parse({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                       {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"RANK", "1"}, {"WORLD_SIZE", "2"}});
  EXPECT_EQ(env.source, "openmpi");
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
}

TEST(RankEnv, SlurmThenTorchrun) {
  RankEnv slurm = parse({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "6"}, {"SLURM_LOCALID", "1"}, {"RANK", "0"},
                         {"WORLD_SIZE", "1"}});
  EXPECT_EQ(slurm.source, "slurm");
  EXPECT_EQ(slurm.rank, 5);
  EXPECT_EQ(slurm.world_size, 6);
  EXPECT_EQ(slurm.local_rank, 1);
  RankEnv torchrun = parse({{"RANK", "2"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}});
  EXPECT_EQ(torchrun.source, "torchrun");
  EXPECT_EQ(torchrun.rank, 2);
  EXPECT_EQ(torchrun.world_size, 4);
  EXPECT_EQ(torchrun.local_rank, 2);
}

TEST(RankEnv, MissingLocalRankIsZero) {
  RankEnv env = parse({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  EXPECT_EQ(env.local_rank, 0);
}

void expect_error(const Env& env, const std::string& fragment) {
  try {
    parse(env);
    FAIL() << "expected an error containing: " << fragment;
  } catch (const KeelError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(RankEnv, InconsistentValuesAreClearErrors) {
  expect_error({{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"}},
               "OMPI_COMM_WORLD_RANK=4 is inconsistent with OMPI_COMM_WORLD_SIZE=4");
  expect_error({{"RANK", "-1"}, {"WORLD_SIZE", "4"}}, "RANK=-1 is inconsistent");
  expect_error({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "0"}}, "SLURM_NTASKS=0 must be >= 1");
  expect_error({{"SLURM_PROCID", "0"}}, "SLURM_PROCID is set (slurm) but SLURM_NTASKS is not");
  expect_error({{"RANK", "x1"}, {"WORLD_SIZE", "4"}}, "RANK='x1' is not an integer");
  expect_error({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "4"}}, "LOCAL_RANK=4 is inconsistent");
}

TEST(RankEnv, ReadsTheProcessEnvironment) {
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "3", 1);
  ::setenv("LOCAL_RANK", "1", 1);
  const bool under_mpi = std::getenv("OMPI_COMM_WORLD_RANK") != nullptr || std::getenv("SLURM_PROCID") != nullptr;
  RankEnv env = read_rank_env();
  ::unsetenv("RANK");
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("LOCAL_RANK");
  if (!under_mpi) {
    EXPECT_EQ(env.source, "torchrun");
    EXPECT_EQ(env.rank, 1);
    EXPECT_EQ(env.world_size, 3);
  }
}

// ---- layout and process groups ----

TEST(ProcessGroups, LayoutMismatchMessage) {
  try {
    check_layout(2, 3, 4);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "parallel.dp (2) x parallel.tp (3) = 6 does not match the world size 4");
  }
  EXPECT_THROW(check_layout(0, 1, 1), ConfigError);
  EXPECT_NO_THROW(check_layout(2, 2, 4));
}

TEST(ProcessGroups, WorldOfOne) {
  SingleProcessCommunicator world;
  ProcessGroups groups(world, 1, 1);
  EXPECT_EQ(groups.dp().size(), 1);
  EXPECT_EQ(groups.tp().size(), 1);
  EXPECT_EQ(groups.dp_rank(), 0);
  EXPECT_EQ(groups.tp_rank(), 0);
  EXPECT_EQ(&groups.world(), &world);
  EXPECT_THROW(ProcessGroups(world, 2, 1), ConfigError);
}

TEST(ProcessGroups, GridPositionKeepsTpRanksAdjacent) {
  EXPECT_EQ(grid_position(0, 2).dp_rank, 0);
  EXPECT_EQ(grid_position(1, 2).tp_rank, 1);
  EXPECT_EQ(grid_position(5, 3).dp_rank, 1);
  EXPECT_EQ(grid_position(5, 3).tp_rank, 2);
}

struct Membership {
  int dp_rank, tp_rank, dp_size, tp_size;
  const void* dp_group;
  const void* tp_group;
};

// Builds ProcessGroups on every rank of a threaded fake world of dp * tp.
std::vector<Membership> build_groups(int dp, int tp) {
  const int world = dp * tp;
  auto group = std::make_shared<testing::ThreadGroup>(world);
  std::vector<Membership> out(world);
  std::vector<std::string> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        testing::ThreadCommunicator comm(group, r);
        ProcessGroups groups(comm, dp, tp);
        auto& dpc = dynamic_cast<testing::ThreadCommunicator&>(groups.dp());
        auto& tpc = dynamic_cast<testing::ThreadCommunicator&>(groups.tp());
        out[r] = {groups.dp_rank(), groups.tp_rank(), groups.dp().size(), groups.tp().size(), dpc.group(), tpc.group()};
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  return out;
}

TEST(ProcessGroups, MembershipDp2Tp2) {
  auto m = build_groups(2, 2);
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(m[r].dp_rank, r / 2);
    EXPECT_EQ(m[r].tp_rank, r % 2);
    EXPECT_EQ(m[r].dp_size, 2);
    EXPECT_EQ(m[r].tp_size, 2);
  }
  // tp groups {0,1} {2,3}; dp groups {0,2} {1,3}.
  EXPECT_EQ(m[0].tp_group, m[1].tp_group);
  EXPECT_EQ(m[2].tp_group, m[3].tp_group);
  EXPECT_NE(m[0].tp_group, m[2].tp_group);
  EXPECT_EQ(m[0].dp_group, m[2].dp_group);
  EXPECT_EQ(m[1].dp_group, m[3].dp_group);
  EXPECT_NE(m[0].dp_group, m[1].dp_group);
}

TEST(ProcessGroups, MembershipDp3Tp2) {
  auto m = build_groups(3, 2);
  std::set<const void*> tp_groups, dp_groups;
  for (int r = 0; r < 6; ++r) {
    EXPECT_EQ(m[r].dp_rank, r / 2);
    EXPECT_EQ(m[r].tp_rank, r % 2);
    EXPECT_EQ(m[r].dp_size, 3);
    EXPECT_EQ(m[r].tp_size, 2);
    EXPECT_EQ(m[r].tp_group, m[(r / 2) * 2].tp_group);  // same dp_rank -> same tp group
    EXPECT_EQ(m[r].dp_group, m[r % 2].dp_group);        // same tp_rank -> same dp group
    tp_groups.insert(m[r].tp_group);
    dp_groups.insert(m[r].dp_group);
  }
  EXPECT_EQ(tp_groups.size(), 3u);
  EXPECT_EQ(dp_groups.size(), 2u);
}

TEST(ProcessGroups, MismatchWithFakeWorld) {
  auto group = std::make_shared<testing::ThreadGroup>(4);
  testing::ThreadCommunicator comm(group, 0);
  EXPECT_THROW(ProcessGroups(comm, 2, 3), ConfigError);  // fails before any collective
}

// ---- SingleProcessCommunicator ----

TEST(SingleProcessCommunicator, IdentityAndCopies) {
  SingleProcessCommunicator comm;
  std::vector<float> a{1, 2, 3};
  comm.all_reduce(a.data(), a.size(), DataType::kFloat32, ReduceOp::kAvg);
  EXPECT_EQ(a, (std::vector<float>{1, 2, 3}));
  std::vector<float> b(3);
  comm.all_gather(a.data(), b.data(), 3, DataType::kFloat32);
  EXPECT_EQ(b, a);
  std::vector<int64_t> c{7, 8}, d(2);
  comm.reduce_scatter(c.data(), d.data(), 2, DataType::kInt64, ReduceOp::kSum);
  EXPECT_EQ(d, c);
  comm.broadcast(a.data(), 3, DataType::kFloat32, 0);
  EXPECT_THROW(comm.broadcast(a.data(), 3, DataType::kFloat32, 1), KeelError);
  comm.barrier();
  EXPECT_NE(comm.split(0, 0), nullptr);
  EXPECT_EQ(comm.split(-1, 0), nullptr);
  comm.abort();
  EXPECT_THROW(comm.barrier(), KeelError) << "barrier is a no-op but still checks";
}

// ---- 16-bit conversion ----

TEST(HalfConvert, RoundTripsAndRounds) {
  const std::vector<float> values{0.0f, -0.0f, 1.0f, -2.5f, 3.140625f, 65504.0f, 1e-7f, 6.1035156e-05f, INFINITY};
  for (DataType type : {DataType::kBFloat16, DataType::kFloat16}) {
    std::vector<uint16_t> bits(values.size());
    std::vector<float> back(values.size());
    float_to_half(values.data(), bits.data(), values.size(), type);
    half_to_float(bits.data(), back.data(), values.size(), type);
    for (size_t i = 0; i < values.size(); ++i) {
      const float tolerance = type == DataType::kBFloat16 ? std::abs(values[i]) / 128 : std::abs(values[i]) / 1024 + 6e-8f;
      if (std::isinf(values[i])) {
        EXPECT_TRUE(std::isinf(back[i]));
      } else {
        EXPECT_NEAR(back[i], values[i], tolerance) << to_string(type) << " " << values[i];
      }
    }
  }
  // Ties round to even: 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125.
  float tie = 1.00390625f;
  uint16_t out = 0;
  float_to_half(&tie, &out, 1, DataType::kBFloat16);
  EXPECT_EQ(out, 0x3f80);
  float big = 70000.0f;
  float_to_half(&big, &out, 1, DataType::kFloat16);
  EXPECT_EQ(out, 0x7c00);  // overflow to +inf
  float nan = NAN;
  float back = 0;
  for (DataType type : {DataType::kBFloat16, DataType::kFloat16}) {
    float_to_half(&nan, &out, 1, type);
    half_to_float(&out, &back, 1, type);
    EXPECT_TRUE(std::isnan(back));
  }
}

// ---- ParallelConfig ----

TEST(ParallelConfig, ValidatesAndVisits) {
  ParallelConfig config;
  EXPECT_NO_THROW(config.validate());
  config.dp = 0;
  EXPECT_THROW(config.validate(), ConfigError);
  config.dp = 2;
  config.backend = "single";
  EXPECT_THROW(config.validate(), ConfigError);
  config.backend = "auto";
  config.shard_gradients = true;  // ZeRO-2 without ZeRO-1
  try {
    config.validate();
    ADD_FAILURE() << "shard_gradients without shard_optimizer must be refused";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.shard_gradients=true needs parallel.shard_optimizer=true"),
              std::string::npos)
        << e.what();
  }
  config.shard_optimizer = true;
  EXPECT_NO_THROW(config.validate());

  ParallelConfig parsed;
  std::vector<ConfigSectionRef> sections{{"parallel", [&](ConfigVisitor& v) { parsed.visit(v); }}};
  apply_yaml_text(sections,
                  "parallel:\n  dp: 4\n  tp: 2\n  backend: mpi\n  bucket_mb: 1.5\n  shard_optimizer: true\n"
                  "  shard_gradients: true\n",
                  "test.yaml");
  EXPECT_EQ(parsed.dp, 4);
  EXPECT_EQ(parsed.tp, 2);
  EXPECT_EQ(parsed.backend, "mpi");
  EXPECT_DOUBLE_EQ(parsed.bucket_mb, 1.5);
  EXPECT_TRUE(parsed.shard_optimizer);
  EXPECT_TRUE(parsed.shard_gradients);
  EXPECT_THROW(apply_override(sections, "parallel.backend=gloo"), ConfigError);
  EXPECT_THROW(apply_override(sections, "parallel.pp=2"), ConfigError);
}

}  // namespace
}  // namespace keel::parallel
