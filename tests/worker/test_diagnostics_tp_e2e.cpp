// Model diagnostics under tensor parallelism, through the real `keel train --nproc 2` (real
// coordinator, two keel-worker ranks under mpirun, parallel.tp=2): each rank holds half the heads
// and half the MLP hidden units, so the per-head entropies must be gathered in head order and the
// sparsity counts summed. The diag.* values in metrics.jsonl must match a single-process run of the
// same job (same weights up to the float rounding of the TP all-reduces). `keel diagnose` of the
// TP=2 checkpoint (two shards, re-assembled onto one process) gives the values that run logged.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

constexpr int kSteps = 10;

std::string args() {
  return "--set train.steps=" + std::to_string(kSteps) +
         " --set train.batch_size=16 --set diagnostics.every=5 --set checkpoint.every=10 --set train.eval_every=0";
}

TEST(DiagnosticsTensorParallelE2E, TwoRanksGiveTheSameDiagnosticsAsOneProcess) {
  const std::string one = fresh_dir("diagnostics_tp1"), two = fresh_dir("diagnostics_tp2");
  auto a = keel_train(one, args());
  ASSERT_EQ(a.exit_code, 0) << a.output;
  auto b = keel_train(two, "--nproc 2 --set parallel.tp=2 " + args());
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_NE(b.output.find("dp 1 x tp 2"), std::string::npos) << b.output;

  auto ra = read_jsonl(one + "/metrics.jsonl"), rb = read_jsonl(two + "/metrics.jsonl");
  ASSERT_EQ(ra.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(rb.size(), ra.size());
  // tiny.yaml: 2 layers x 2 heads, d 64, MLP hidden 256, probe batch 4 x 32 tokens.
  for (size_t i : {4u, 9u}) {  // steps 5 and 10
    size_t compared = 0, heads = 0;
    double worst = 0;
    std::string worst_key;
    for (auto& [key, value] : ra[i].items()) {
      if (key.rfind("diag.", 0) != 0) continue;
      ASSERT_TRUE(rb[i].contains(key)) << key << " missing from the TP=2 run at record " << i;
      const double x = value.get<double>(), y = rb[i][key].get<double>();
      // Sparsity fractions are counts over 4*32*256 = 32768 units: a unit whose |a| sits within
      // rounding of the threshold may flip, one flip is 3e-5. Everything else is continuous.
      const bool is_count = key.find("sparsity") != std::string::npos || key.find("exactly_zero") != std::string::npos;
      const double tolerance = is_count ? 1.0e-4 : 2.0e-6 * std::max(1.0, std::abs(x));
      EXPECT_NEAR(x, y, tolerance) << key << " at record " << i;
      if (!is_count && std::abs(x - y) > worst) worst = std::abs(x - y), worst_key = key;
      heads += key.find(".head") != std::string::npos;
      ++compared;
    }
    size_t diag_b = 0;
    for (auto& [key, value] : rb[i].items()) diag_b += key.rfind("diag.", 0) == 0;
    EXPECT_EQ(diag_b, compared) << "the TP=2 run reports other diagnostics";
    EXPECT_EQ(heads, 2u * 2u * 2u) << "2 layers x 2 heads x (entropy, normalised entropy)";
    // Head order: the heads differ from each other, so a swapped gather would be caught above.
    EXPECT_NE(ra[i]["diag.layer0.head0.attention_entropy"], ra[i]["diag.layer0.head1.attention_entropy"]);
    std::printf("record %zu: %zu diagnostics compared, largest difference %.3g (%s)\n", i, compared, worst,
                worst_key.c_str());
  }
  EXPECT_FALSE(rb[5].contains("diag.layer0.linearity"));

  // The sharded checkpoint of step 10 through `keel diagnose` (one process).
  ASSERT_TRUE(std::filesystem::exists(two + "/checkpoints/step_00000010/model.tp1-of-2.safetensors"));
  auto d = run_process(keel_binary() + " diagnose " + two + " --json " + two + "/diagnose.json");
  ASSERT_EQ(d.exit_code, 0) << d.output;
  auto report = nlohmann::json::parse(read_bytes(two + "/diagnose.json"));
  size_t compared = 0;
  for (auto& [key, value] : rb[9].items()) {
    if (key.rfind("diag.", 0) != 0) continue;
    const double x = value.get<double>(), y = report["flat"][key].get<double>();
    const bool is_count = key.find("sparsity") != std::string::npos || key.find("exactly_zero") != std::string::npos;
    EXPECT_NEAR(x, y, is_count ? 1.0e-4 : 1.0e-5 * std::max(1.0, std::abs(x))) << key;
    ++compared;
  }
  EXPECT_EQ(compared, report["flat"].size());
}

}  // namespace
}  // namespace keel
