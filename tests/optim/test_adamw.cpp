// AdamW against an independent scalar computation of the published update rule (Loshchilov &
// Hutter; torch.optim.AdamW with amsgrad=False), the LR schedule against its formula, and on a
// CUDA machine the fused kernel against the multi-tensor path.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "optim/adamw.h"
#include "optim/lr_schedule.h"

namespace keel {
namespace {

struct Reference {
  std::vector<double> p, m, v;
};

// One AdamW step in double, element by element.
void reference_step(Reference& r, const std::vector<double>& grad, double lr, double b1, double b2, double eps,
                    double wd, int t) {
  for (size_t i = 0; i < r.p.size(); ++i) {
    r.p[i] *= 1 - lr * wd;
    r.m[i] = b1 * r.m[i] + (1 - b1) * grad[i];
    r.v[i] = b2 * r.v[i] + (1 - b2) * grad[i] * grad[i];
    const double m_hat = r.m[i] / (1 - std::pow(b1, t));
    const double v_hat = r.v[i] / (1 - std::pow(b2, t));
    r.p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
  }
}

std::vector<double> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kDouble).contiguous().view(-1);
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

TEST(AdamW, MatchesScalarReferenceWithAndWithoutDecay) {
  torch::manual_seed(0);
  auto w = torch::randn({4, 5}).set_requires_grad(true);
  auto b = torch::randn({5}).set_requires_grad(true);
  AdamWOptions options;
  options.weight_decay = 0.1;
  AdamW opt({"w", "b"}, {w, b}, {true, false}, options);
  Reference rw{to_vector(w), std::vector<double>(20), std::vector<double>(20)};
  Reference rb{to_vector(b), std::vector<double>(5), std::vector<double>(5)};
  const double lrs[] = {1e-2, 3e-3, 5e-2, 1e-3};
  for (int t = 1; t <= 4; ++t) {
    auto gw = torch::randn({4, 5}), gb = torch::randn({5});
    w.mutable_grad() = gw.clone();
    b.mutable_grad() = gb.clone();
    opt.step(lrs[t - 1]);
    reference_step(rw, to_vector(gw), lrs[t - 1], 0.9, 0.95, 1e-8, 0.1, t);
    reference_step(rb, to_vector(gb), lrs[t - 1], 0.9, 0.95, 1e-8, 0.0, t);
  }
  auto pw = to_vector(w), pb = to_vector(b);
  for (size_t i = 0; i < pw.size(); ++i) EXPECT_NEAR(pw[i], rw.p[i], 1e-6) << i;
  for (size_t i = 0; i < pb.size(); ++i) EXPECT_NEAR(pb[i], rb.p[i], 1e-6) << i;
  EXPECT_EQ(opt.step_count(), 4);
}

TEST(AdamW, FusedCudaKernelMatchesMultiTensorPath) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a CUDA device (runs on the GPU machine)";
  torch::manual_seed(1);
  auto make = [] {
    auto w = torch::randn({64, 33}, torch::kCUDA).set_requires_grad(true);
    auto b = torch::randn({33}, torch::kCUDA).set_requires_grad(true);
    return std::make_pair(w, b);
  };
  auto [w1, b1] = make();
  auto w2 = w1.detach().clone().set_requires_grad(true), b2 = b1.detach().clone().set_requires_grad(true);
  AdamWOptions fused, plain;
  fused.fused = true;
  plain.fused = false;
  AdamW a({"w", "b"}, {w1, b1}, {true, false}, fused), c({"w", "b"}, {w2, b2}, {true, false}, plain);
  for (int t = 0; t < 5; ++t) {
    auto gw = torch::randn({64, 33}, torch::kCUDA), gb = torch::randn({33}, torch::kCUDA);
    w1.mutable_grad() = gw.clone();
    b1.mutable_grad() = gb.clone();
    w2.mutable_grad() = gw.clone();
    b2.mutable_grad() = gb.clone();
    a.step(1e-2);
    c.step(1e-2);
  }
  EXPECT_TRUE(torch::isfinite(w1).all().item<bool>());
  EXPECT_LT((w1 - w2).abs().max().item<double>(), 1e-5);
  EXPECT_LT((b1 - b2).abs().max().item<double>(), 1e-5);
}

TEST(LrSchedule, WarmupThenCosineToMinimum) {
  LrSchedule s{1.0, 10, 110, 0.1};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.1 + 0.5 * 0.9, 1e-12);  // half-way through the cosine
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  EXPECT_NEAR(s.at(500), 0.1, 1e-12);
}

TEST(AdamW, IndependentDecayFollowsTheScheduleNotThePeakLr) {
  // Zero moments and gradients isolate the decay: Adam's step is 0 / (0 + eps) = 0.
  for (const bool independent : {false, true}) {
    auto w = torch::ones({3});
    w.mutable_grad() = torch::zeros({3});
    AdamWOptions options;
    options.weight_decay = 0.1;
    options.independent_decay = independent;
    options.peak_lr = 0.02;
    AdamW opt({"w"}, {w}, {true}, options);
    opt.step(0.01);  // half the peak
    // coupled: 1 - lr * wd = 0.999; independent: 1 - (lr / peak) * wd = 0.95.
    const double expected = independent ? 1.0 - 0.5 * 0.1 : 1.0 - 0.01 * 0.1;
    EXPECT_NEAR(w[0].item<double>(), expected, 1e-7) << (independent ? "independent" : "coupled");
  }
}

TEST(LrSchedule, WarmupStableDecay) {
  // 100 steps, warm-up 10, the last 20% (steps 80..99) decay linearly to 0.1 at step 99.
  LrSchedule s{1.0, 10, 100, 0.1, /*wsd=*/true, /*decay_fraction=*/0.2};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_DOUBLE_EQ(s.at(79), 1.0);                       // stable to the decay's start
  EXPECT_NEAR(s.at(80), 1.0 - 0.9 * 1.0 / 20.0, 1e-12);  // first decay step
  EXPECT_NEAR(s.at(89), 1.0 - 0.9 * 10.0 / 20.0, 1e-12);
  EXPECT_NEAR(s.at(99), 0.1, 1e-12);                     // the minimum at the last step
  EXPECT_NEAR(s.at(150), 0.1, 1e-12);
  for (int64_t t = 81; t < 100; ++t) EXPECT_LT(s.at(t), s.at(t - 1)) << t;
}

}  // namespace
}  // namespace keel
