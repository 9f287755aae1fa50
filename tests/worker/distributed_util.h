// Helpers of the distributed end-to-end tests (test_distributed_e2e.cpp,
// test_sharded_optimizer_e2e.cpp): the common training arguments, the final weights of a run
// reassembled from its TP shards by an independent loop over the raw float32 data, and the
// comparison of a distributed run with the single-process reference on the doubled batch.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "model/tensor_parallel_layout.h"
#include "tests/worker/process_util.h"

namespace keel::testing_util {

using checkpoint::SafetensorsFile;

constexpr int kSteps = 24;

inline std::string common_args(int steps = kSteps) {
  return "--set train.steps=" + std::to_string(steps) +
         " --set diagnostics.every=0 --set checkpoint.every=8 --set train.eval_every=12";
}

// A float32 tensor as (shape, values).
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

inline HostTensor read_tensor(const SafetensorsFile& file, const std::string& name) {
  auto view = file.view(name);
  HostTensor t{view.shape, std::vector<float>(view.nbytes / sizeof(float))};
  std::memcpy(t.values.data(), view.data, view.nbytes);
  return t;
}

// Reassembles a full tensor from TP shards, by the layout of model/tensor_parallel_layout.h.
inline HostTensor unshard(const std::vector<HostTensor>& shards, ShardKind kind) {
  if (shards.size() == 1 || kind == ShardKind::kReplicated) return shards[0];
  HostTensor full;
  full.shape = shards[0].shape;
  const int64_t rows = shards[0].shape[0];
  const int64_t cols = shards[0].shape.size() > 1 ? shards[0].shape[1] : 1;
  if (kind == ShardKind::kColumns) {
    full.shape[1] = cols * static_cast<int64_t>(shards.size());
    for (int64_t r = 0; r < rows; ++r)
      for (const auto& s : shards) full.values.insert(full.values.end(), s.values.begin() + r * cols, s.values.begin() + (r + 1) * cols);
    return full;
  }
  full.shape[0] = rows * static_cast<int64_t>(shards.size());
  const int64_t parts = kind == ShardKind::kQkvRows ? 3 : 1, part_rows = rows / parts;
  for (int64_t p = 0; p < parts; ++p)
    for (const auto& s : shards)
      full.values.insert(full.values.end(), s.values.begin() + p * part_rows * cols,
                         s.values.begin() + (p + 1) * part_rows * cols);
  return full;
}

// Every parameter of the final checkpoint of `run_dir`, whole.
inline std::map<std::string, HostTensor> final_weights(const std::string& run_dir, int tp, int step = kSteps) {
  char step_dir[32];
  std::snprintf(step_dir, sizeof(step_dir), "step_%08d", step);
  const std::string dir = run_dir + "/checkpoints/" + step_dir;
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (int r = 0; r < tp; ++r) files.push_back(std::make_unique<SafetensorsFile>(dir + "/model" + shard_suffix(r, tp) + ".safetensors"));
  std::map<std::string, HostTensor> weights;
  for (const auto& name : files[0]->names()) {
    std::vector<HostTensor> shards;
    for (const auto& f : files) shards.push_back(read_tensor(*f, name));
    weights[name] = unshard(shards, shard_kind(name));
  }
  return weights;
}

// The relative difference of per-step losses and grad norms, and of the final weights.
inline void expect_matches(const std::string& reference_dir, const std::string& run_dir, int tp) {
  auto a = read_jsonl(reference_dir + "/metrics.jsonl"), b = read_jsonl(run_dir + "/metrics.jsonl");
  ASSERT_EQ(a.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    for (const char* key : {"loss", "grad_norm"}) {
      const double x = a[i][key].get<double>(), y = b[i][key].get<double>();
      EXPECT_NEAR(x, y, 2e-5 * std::abs(x)) << key << " at step " << i;
    }
  }
  auto wa = final_weights(reference_dir, 1), wb = final_weights(run_dir, tp);
  ASSERT_EQ(wa.size(), wb.size());
  double worst = 0;
  for (const auto& [name, t] : wa) {
    ASSERT_TRUE(wb.count(name)) << name;
    ASSERT_EQ(t.shape, wb[name].shape) << name;
    for (size_t i = 0; i < t.values.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::abs(t.values[i] - wb[name].values[i])));
  }
  EXPECT_LT(worst, 2e-5) << "largest weight difference";
  std::printf("%s vs one process: largest weight difference %.3g\n", run_dir.c_str(), worst);
}

// The single-process reference: batch 16 (the global batch of the DP runs). One per test, since
// ctest runs the tests of this file as concurrent processes.
inline std::string reference_run(const std::string& extra = "") {
  const std::string d =
      fresh_dir(std::string("dist-reference-") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
  auto r = keel_train(d, common_args() + " --set train.batch_size=16 " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return d;
}

// Trains `args` straight to kSteps and again stopped at step 8 and resumed: the per-step losses and
// grad norms, and the final checkpoint's `files`, must be identical bit for bit.
inline void expect_stop_and_resume_identical(const std::string& tag, const std::string& args,
                                             const std::vector<std::string>& files) {
  const std::string straight = fresh_dir(tag + "-straight"), resumed = fresh_dir(tag + "-resumed");
  ASSERT_EQ(keel_train(straight, args).exit_code, 0) << tag;
  auto first = keel_train(resumed, args + " --set train.stop_at=8");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto second = keel_train(resumed, args + " --resume");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  auto a = read_jsonl(straight + "/metrics.jsonl"), b = read_jsonl(resumed + "/metrics.jsonl");
  ASSERT_EQ(a.size(), b.size()) << tag;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["loss"], b[i]["loss"]) << "step " << i << " (" << tag << ")";
    EXPECT_EQ(a[i]["grad_norm"], b[i]["grad_norm"]) << "step " << i << " (" << tag << ")";
  }
  for (const auto& file : files) {
    const std::string tail = "/checkpoints/step_00000024/" + file;
    const std::string expected = read_bytes(straight + tail);
    EXPECT_FALSE(expected.empty()) << straight + tail << " is missing or empty (" << tag << ")";
    EXPECT_EQ(expected, read_bytes(resumed + tail)) << file << " differs (" << tag << ")";
  }
}

}  // namespace keel::testing_util
