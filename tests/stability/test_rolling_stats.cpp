// RollingWindow, EmaStats and RobustZScore against values computed independently in the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "stability/rolling_stats.h"

namespace keel {
namespace {

// Brute-force median by full sort (independent of the nth_element implementation).
double sorted_median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

TEST(RollingWindow, MedianMadMeanByHand) {
  RollingWindow w(8);
  for (double x : {1.0, 2.0, 3.0, 4.0, 100.0}) w.push(x);
  EXPECT_EQ(w.size(), 5u);
  EXPECT_DOUBLE_EQ(w.median(), 3.0);
  // |x - 3| = {2, 1, 0, 1, 97} -> median 1 -> MAD 1.4826.
  EXPECT_DOUBLE_EQ(w.mad(), 1.4826);
  EXPECT_DOUBLE_EQ(w.mean(), 22.0);
}

TEST(RollingWindow, EvictsOldestAndKeepsOrder) {
  RollingWindow w(4);
  for (int i = 1; i <= 6; ++i) w.push(i);
  EXPECT_EQ(w.values(), (std::vector<double>{3, 4, 5, 6}));
  EXPECT_EQ(w.size(), 4u);
  EXPECT_DOUBLE_EQ(w.median(), 4.5);  // even count: mean of the middle two
  // |x - 4.5| = {1.5, 0.5, 0.5, 1.5} -> median 1.0.
  EXPECT_DOUBLE_EQ(w.mad(), 1.4826);
  EXPECT_DOUBLE_EQ(w.mean(), 4.5);
  w.clear();
  EXPECT_TRUE(w.empty());
  EXPECT_DOUBLE_EQ(w.median(), 0.0);
}

TEST(RollingWindow, MatchesBruteForceOnRandomStream) {
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(5.0, 2.0);
  RollingWindow w(37);
  std::vector<double> all;
  for (int i = 0; i < 500; ++i) {
    double x = noise(rng);
    w.push(x);
    all.push_back(x);
    std::vector<double> last(all.end() - std::min<size_t>(all.size(), 37), all.end());
    ASSERT_EQ(w.values(), last);
    double med = sorted_median(last);
    ASSERT_DOUBLE_EQ(w.median(), med);
    std::vector<double> dev;
    for (double v : last) dev.push_back(std::fabs(v - med));
    ASSERT_NEAR(w.mad(), 1.4826 * sorted_median(dev), 1e-12);
  }
  // MAD * 1.4826 estimates sigma on normal data.
  EXPECT_NEAR(w.mad(), 2.0, 0.8);
}

TEST(EmaStats, TwoValuesByHand) {
  EmaStats e(0.5);
  e.push(2.0);
  EXPECT_DOUBLE_EQ(e.mean(), 2.0);  // bias correction: one value is its own mean
  EXPECT_NEAR(e.variance(), 0.0, 1e-12);
  e.push(4.0);
  // Normalized weights 1/3 (x=2), 2/3 (x=4): mean 10/3, variance 1/3*16/9 + 2/3*4/9 = 24/27.
  EXPECT_NEAR(e.mean(), 10.0 / 3.0, 1e-12);
  EXPECT_NEAR(e.variance(), 24.0 / 27.0, 1e-12);
}

TEST(EmaStats, MatchesExplicitWeightedSums) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(-3.0, 7.0);
  const double beta = 0.9;
  EmaStats e(beta);
  std::vector<double> xs;
  for (int i = 0; i < 60; ++i) {
    xs.push_back(u(rng));
    e.push(xs.back());
  }
  // weights w_i = (1-beta) beta^(n-1-i), normalized by their sum.
  double wsum = 0, mean = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    double w = (1 - beta) * std::pow(beta, static_cast<double>(xs.size() - 1 - i));
    wsum += w;
    mean += w * xs[i];
  }
  mean /= wsum;
  double var = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    double w = (1 - beta) * std::pow(beta, static_cast<double>(xs.size() - 1 - i));
    var += w * (xs[i] - mean) * (xs[i] - mean);
  }
  var /= wsum;
  EXPECT_NEAR(e.mean(), mean, 1e-10);
  EXPECT_NEAR(e.variance(), var, 1e-9);
  EXPECT_EQ(e.count(), 60);
}

TEST(RobustZScore, MedianMadZ) {
  RobustZScore z("median_mad", 16, 0.98);
  for (double x : {10.0, 11.0, 9.0, 10.0, 12.0, 8.0, 10.0}) z.push(x);
  // median 10, |x-10| = {0,1,1,0,2,2,0} -> median 1 -> scale 1.4826.
  EXPECT_DOUBLE_EQ(z.center(), 10.0);
  EXPECT_DOUBLE_EQ(z.scale(), 1.4826);
  EXPECT_NEAR(z.z(13.0), 3.0 / 1.4826, 1e-12);
  EXPECT_EQ(z.count(), 7);
}

TEST(RobustZScore, FloorGuardsZeroScale) {
  RobustZScore z("median_mad", 16, 0.98);
  for (int i = 0; i < 10; ++i) z.push(5.0);
  EXPECT_DOUBLE_EQ(z.scale(), 0.0);
  double floor = 1e-8 + 1e-3 * 5.0;
  EXPECT_DOUBLE_EQ(z.floored_scale(), floor);
  EXPECT_NEAR(z.z(5.1), 0.1 / floor, 1e-6);
  EXPECT_TRUE(std::isfinite(z.z(5.0)));

  RobustZScore with_min("median_mad", 16, 0.98, /*min_scale=*/0.5);
  for (int i = 0; i < 10; ++i) with_min.push(5.0);
  EXPECT_DOUBLE_EQ(with_min.z(6.0), 2.0);
}

TEST(RobustZScore, EmaMethodUsesMeanAndStddev) {
  RobustZScore z("ema", 100, 0.5);
  z.push(2.0);
  z.push(4.0);
  EXPECT_NEAR(z.center(), 10.0 / 3.0, 1e-12);
  EXPECT_NEAR(z.scale(), std::sqrt(24.0 / 27.0), 1e-12);
  EXPECT_EQ(z.method(), RobustZScore::Method::kEma);
}

TEST(RobustZScore, JsonRoundTripAndRebuild) {
  for (const char* method : {"median_mad", "ema"}) {
    RobustZScore a(method, 20, 0.9);
    std::mt19937 rng(3);
    std::normal_distribution<double> n(1.0, 0.1);
    std::vector<double> pushed;
    for (int i = 0; i < 50; ++i) {
      pushed.push_back(n(rng));
      a.push(pushed.back());
    }
    RobustZScore b(method, 20, 0.9);
    ASSERT_TRUE(b.from_json(nlohmann::json::parse(a.to_json().dump())));
    EXPECT_EQ(a.center(), b.center()) << method;  // bit-identical
    EXPECT_EQ(a.scale(), b.scale()) << method;
    EXPECT_EQ(a.z(1.7), b.z(1.7)) << method;

    RobustZScore c(method, 20, 0.9);
    c.rebuild(pushed);
    EXPECT_EQ(a.center(), c.center()) << method;

    RobustZScore other(std::string(method) == "ema" ? "median_mad" : "ema", 20, 0.9);
    EXPECT_FALSE(other.from_json(a.to_json())) << method;
  }
  EXPECT_THROW(RobustZScore("mean", 10, 0.9), std::exception);
}

}  // namespace
}  // namespace keel
