// The fused cross-entropy (kernels/cross_entropy*, model/lm_loss.*) against LibTorch's fp32
// cross_entropy on the same bf16 logits: loss and gradient, for GPT-2's V=50304, odd V, N that is
// a multiple of nothing, rows whose stride is not V, extreme logits, ignored and out-of-range
// targets, and a whole model's parameter gradients with the fused loss on and off. The CUDA tests
// skip without a CUDA device (and in builds whose LibTorch has no CUDA); the dispatch test runs
// everywhere.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "kernels/cross_entropy_torch.h"
#include "model/gpt.h"
#include "tests/kernels/fused_gpt_comparison.h"
#include "model/lm_loss.h"
#include "model/torch_compat.h"

namespace keel {
namespace {

bool have_fused_cuda() { return kernels::fused_cross_entropy_built() && torch::cuda::is_available(); }

#define SKIP_WITHOUT_FUSED_CUDA()                                                                   \
  if (!have_fused_cuda()) GTEST_SKIP() << "needs a CUDA device and a build with the fused kernels"

struct Errors {
  double loss_abs = 0;      // |fused - reference| of the mean loss
  double grad_abs = 0;      // max |fused - reference| over the gradient, in units of 1/count
  double grad_rel = 0;      // max relative error where |reference| >= 1e-2 / count
  int64_t grad_bad = 0;     // elements outside |d| <= 8e-3 |ref| + 1e-3 / count
};

// Loss and gradient of the fused path (logits as given, bf16 on CUDA) and of LibTorch's fp32
// cross_entropy on the same values; asserts the tolerances and returns the errors.
Errors compare(const torch::Tensor& logits, const torch::Tensor& targets, bool grad_over_logits,
               const std::string& what) {
  // Reference: fp32 logits, LibTorch's log_softmax + nll, fp32 gradient.
  auto ref_in = logits.detach().to(torch::kFloat).requires_grad_(true);
  auto ref_loss = torch::nn::functional::cross_entropy(ref_in, targets);
  auto ref_grad = torch::autograd::grad({ref_loss}, {ref_in})[0];

  // Fused: a non-leaf copy of the logits (its storage may be overwritten by the gradient).
  auto leaf = logits.detach().clone().requires_grad_(true);
  auto input = grad_over_logits ? leaf.clone() : leaf;
  if (logits.stride(0) != logits.size(1)) {  // keep the caller's row stride (a narrowed wider tensor)
    auto wide = torch::zeros({logits.size(0), logits.stride(0)}, logits.options());
    wide.narrow(1, 0, logits.size(1)).copy_(logits);
    leaf = wide.requires_grad_(true);
    input = leaf.narrow(1, 0, logits.size(1));
    EXPECT_EQ(input.stride(0), logits.stride(0));
  }
  EXPECT_TRUE(lm_cross_entropy_fused(input)) << what;
  auto loss = lm_cross_entropy(input, targets, /*fused=*/true, grad_over_logits);
  EXPECT_EQ(loss.scalar_type(), torch::kFloat) << what;
  EXPECT_EQ(loss.dim(), 0) << what;
  auto grad = torch::autograd::grad({loss}, {leaf})[0].narrow(1, 0, logits.size(1));
  EXPECT_EQ(grad.scalar_type(), torch::kBFloat16) << what;

  Errors e;
  const double count = targets.ne(-100).sum().item<double>();
  const double unit = 1.0 / std::max(count, 1.0);  // the largest possible |gradient|
  const double ref_value = ref_loss.item<double>();
  e.loss_abs = std::abs(loss.item<double>() - ref_value);
  EXPECT_LE(e.loss_abs, 2e-5 * std::max(1.0, std::abs(ref_value))) << what << ": loss " << loss.item<double>()
                                                                     << " vs " << ref_value;
  auto g = grad.to(torch::kFloat), r = ref_grad;
  auto diff = (g - r).abs();
  e.grad_abs = diff.max().item<double>() / unit;
  auto big = r.abs() >= 1e-2 * unit;
  e.grad_rel = big.any().item<bool>() ? (diff.masked_select(big) / r.abs().masked_select(big)).max().item<double>() : 0;
  e.grad_bad = (diff > 8e-3 * r.abs() + 1e-3 * unit).sum().item<int64_t>();
  EXPECT_EQ(e.grad_bad, 0) << what << ": max abs error " << e.grad_abs << "/count, max rel " << e.grad_rel;
  EXPECT_FALSE(torch::isnan(g).any().item<bool>()) << what;
  std::printf("%-44s loss %.6f  |dloss| %.2e  grad max abs %.2e/count  max rel %.2e\n", what.c_str(), ref_value,
              e.loss_abs, e.grad_abs, e.grad_rel);
  return e;
}

torch::Tensor random_logits(int64_t n, int64_t v, double scale) {
  return (torch::randn({n, v}, torch::kFloat) * scale).to(torch::kCUDA, torch::kBFloat16);
}

torch::Tensor random_targets(int64_t n, int64_t v) { return torch::randint(0, v, {n}, torch::kLong).to(torch::kCUDA); }

TEST(FusedCrossEntropy, MatchesLibTorchOnGpt2VocabAndOddShapes) {
  SKIP_WITHOUT_FUSED_CUDA();
  torch::manual_seed(11);
  struct Case {
    int64_t n, v;
    double scale;
  };
  for (const Case& c : {Case{1531, 50304, 2.0}, Case{97, 50257, 1.0}, Case{333, 97, 3.0}, Case{5, 1, 1.0},
                        Case{1, 7, 1.0}, Case{129, 8191, 4.0}, Case{64, 65537, 1.0}}) {
    auto logits = random_logits(c.n, c.v, c.scale);
    auto targets = random_targets(c.n, c.v);
    const std::string what = "N=" + std::to_string(c.n) + " V=" + std::to_string(c.v);
    compare(logits, targets, /*grad_over_logits=*/true, what + " in place");
    compare(logits, targets, /*grad_over_logits=*/false, what + " new buffer");
  }
  // Random shapes (seeded).
  for (int i = 0; i < 4; ++i) {
    const int64_t n = torch::randint(1, 600, {1}).item<int64_t>();
    const int64_t v = torch::randint(1, 70000, {1}).item<int64_t>();
    compare(random_logits(n, v, 2.0), random_targets(n, v), i % 2 == 0,
            "random N=" + std::to_string(n) + " V=" + std::to_string(v));
  }
}

TEST(FusedCrossEntropy, RowStrideOtherThanV) {
  SKIP_WITHOUT_FUSED_CUDA();
  torch::manual_seed(12);
  // Rows of a wider tensor: every row starts at another offset from a 16-byte boundary, and the
  // fresh gradient buffer (stride V) is out of phase with them (the scalar path of the backward).
  for (int64_t v : {int64_t{1000}, int64_t{50304}, int64_t{61}}) {
    auto wide = random_logits(77, v + 3, 2.0);
    auto logits = wide.narrow(1, 0, v);
    compare(logits, random_targets(77, v), /*grad_over_logits=*/false, "stride V+3, V=" + std::to_string(v));
    compare(logits, random_targets(77, v), /*grad_over_logits=*/true, "stride V+3 in place, V=" + std::to_string(v));
  }
}

TEST(FusedCrossEntropy, ExtremeLogits) {
  SKIP_WITHOUT_FUSED_CUDA();
  torch::manual_seed(13);
  const int64_t n = 203, v = 50304;
  // Large magnitudes: nearly one-hot softmax rows, lse ~ 1e4 (fp32 ulp there ~1e-3).
  compare(random_logits(n, v, 1000.0), random_targets(n, v), true, "randn x 1000");
  compare(random_logits(n, v, 30.0), random_targets(n, v), true, "randn x 30");
  // All equal (uniform softmax), and a row whose target is its huge maximum, and -inf entries.
  auto logits = torch::zeros({n, v}, torch::kFloat);
  auto targets = random_targets(n, v).cpu();
  logits[1].fill_(-3.0e4);
  logits[1][targets[1].item<int64_t>()] = 3.0e4;
  logits[2].normal_(0, 1);
  logits[2][targets[2].item<int64_t>()] = 60.0;
  logits[3].normal_(0, 1);
  logits[3].narrow(0, 0, v / 2).fill_(-std::numeric_limits<float>::infinity());
  targets[3] = v - 1;
  logits[4].fill_(1.0e30f);  // huge but equal: lse = 1e30 + log(V) rounds to 1e30
  compare(logits.to(torch::kCUDA, torch::kBFloat16), targets.to(torch::kCUDA), true, "uniform/one-hot/-inf/1e30");
}

TEST(FusedCrossEntropy, IgnoreIndexAsLibTorch) {
  SKIP_WITHOUT_FUSED_CUDA();
  torch::manual_seed(14);
  const int64_t n = 300, v = 50304;
  auto logits = random_logits(n, v, 2.0);
  auto targets = random_targets(n, v);
  targets.index_put_({torch::arange(0, n, 3, torch::kLong).to(torch::kCUDA)}, -100);
  compare(logits, targets, true, "every third target -100");
  // The ignored rows' gradient is exactly zero.
  auto input = logits.detach().clone().requires_grad_(true);
  auto loss = lm_cross_entropy(input, targets, true, false);
  auto grad = torch::autograd::grad({loss}, {input})[0];
  EXPECT_EQ(grad.index({targets.eq(-100)}).abs().max().item<float>(), 0.0f);
}

TEST(FusedCrossEntropy, OutOfRangeTargetGivesNaNNotACrash) {
  SKIP_WITHOUT_FUSED_CUDA();
  const int64_t n = 16, v = 1000;
  auto logits = random_logits(n, v, 1.0);
  for (int64_t bad : {v, v + 123456, int64_t{-3}}) {
    auto targets = random_targets(n, v);
    targets[5] = bad;
    auto input = logits.detach().clone().requires_grad_(true);
    auto loss = lm_cross_entropy(input, targets, true, false);
    EXPECT_TRUE(std::isnan(loss.item<float>())) << "target " << bad;
    auto grad = torch::autograd::grad({loss}, {input})[0];
    EXPECT_TRUE(torch::isnan(grad[5].to(torch::kFloat)).all().item<bool>());
  }
  // The CUDA context survived: an ordinary loss afterwards is fine.
  auto loss = lm_cross_entropy(logits, random_targets(n, v), true, false);
  EXPECT_TRUE(std::isfinite(loss.item<float>()));
}

TEST(FusedCrossEntropy, InPlaceGradientRefusesASecondBackward) {
  SKIP_WITHOUT_FUSED_CUDA();
  auto leaf = random_logits(8, 100, 1.0).requires_grad_(true);
  auto loss = lm_cross_entropy(leaf.clone(), random_targets(8, 100), true, /*grad_over_logits=*/true);
  loss.backward({}, /*retain_graph=*/true);
  EXPECT_THROW(loss.backward(), std::exception);
}

TEST(FusedCrossEntropy, RejectsWhatItCannotTake) {
  SKIP_WITHOUT_FUSED_CUDA();
  auto fp32 = torch::randn({4, 10}, torch::kCUDA);
  EXPECT_FALSE(lm_cross_entropy_fused(fp32));
  EXPECT_FALSE(lm_cross_entropy_fused(fp32.to(torch::kBFloat16).t()));  // columns not contiguous
  EXPECT_THROW(kernels::fused_cross_entropy(fp32, random_targets(4, 10), false), std::exception);
  EXPECT_THROW(kernels::fused_cross_entropy(fp32.to(torch::kBFloat16), random_targets(5, 10), false),
               std::exception);
}

// A small GPT under bf16 autocast: the fused loss (gradient over the logits) against the LibTorch
// path of the same model: loss and every parameter gradient.
TEST(FusedCrossEntropy, GptLossAndGradientsMatchTheLibTorchPath) {
  SKIP_WITHOUT_FUSED_CUDA();
  testing_util::expect_fused_matches_libtorch(
      testing_util::small_gpt_config(2), [](Gpt& model, bool on) { model->set_fused_cross_entropy(on); }, 1e-4, 2e-2,
      "fused cross-entropy");
}

// Everywhere (CPU builds too): CPU and fp32 logits keep LibTorch's cross_entropy, bit for bit.
TEST(LmCrossEntropy, NonBf16CudaLogitsTakeLibTorchsPath) {
  torch::manual_seed(15);
  auto logits = torch::randn({37, 101}).requires_grad_(true);
  auto targets = torch::randint(0, 101, {37}, torch::kLong);
  EXPECT_FALSE(lm_cross_entropy_fused(logits));
  EXPECT_FALSE(lm_cross_entropy_fused(logits.to(torch::kBFloat16)));  // bf16, but on the CPU
  auto loss = lm_cross_entropy(logits, targets, true, true);
  auto ref = torch::nn::functional::cross_entropy(logits, targets);
  EXPECT_TRUE(torch::equal(loss, ref));
  auto grad = torch::autograd::grad({loss}, {logits})[0];
  auto ref_grad = torch::autograd::grad({ref}, {logits})[0];
  EXPECT_TRUE(torch::equal(grad, ref_grad));
  if (!kernels::fused_cross_entropy_built())
    EXPECT_THROW(kernels::fused_cross_entropy(logits, targets, false), std::exception);
}

// The z-loss term in the fused kernels (train.z_loss) against LibTorch in fp32: the forward's z
// from the kernel's own log-partition, and the gradient of ce + c * z (the kernel's per-row factor).
TEST(FusedCrossEntropy, ZLossTermAndItsGradientMatchLibTorch) {
  SKIP_WITHOUT_FUSED_CUDA();
  torch::manual_seed(11);
  const int64_t n = 300, v = 50304;
  auto logits = (torch::randn({n, v}, torch::kCUDA) * 3.0 + 2.0).to(torch::kBFloat16);  // lse well away from 0
  auto targets = torch::randint(0, v, {n}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
  targets.index_put_({torch::indexing::Slice(0, 7)}, -100);  // ignored rows are left out of both means
  const double c = 1e-2;
  auto ref_in = logits.detach().to(torch::kFloat).requires_grad_(true);
  auto counted = targets.ne(-100);
  auto lse = torch::logsumexp(ref_in, 1);
  auto ref_z = torch::where(counted, lse * lse, torch::zeros_like(lse)).sum() / counted.sum().to(torch::kFloat);
  auto ref_total = torch::nn::functional::cross_entropy(ref_in, targets) + c * ref_z;
  auto ref_grad = torch::autograd::grad({ref_total}, {ref_in})[0];

  auto leaf = logits.detach().clone().requires_grad_(true);
  const LmLossTerms terms = lm_loss_terms(leaf, targets, /*fused=*/true, /*grad_over_logits=*/false, /*want_z=*/true);
  auto grad = torch::autograd::grad({terms.cross_entropy + c * terms.z}, {leaf})[0].to(torch::kFloat);
  EXPECT_NEAR(terms.z.item<double>(), ref_z.item<double>(), 1e-4 * ref_z.item<double>());
  const double unit = 1.0 / counted.sum().item<double>();
  const double worst = (grad - ref_grad).abs().max().item<double>() / unit;
  EXPECT_LT(worst, 2e-2) << "max abs gradient error in units of 1/count";
  std::printf("z-loss fused: z %.5f vs %.5f, gradient max abs error %.2e/count\n", terms.z.item<double>(),
              ref_z.item<double>(), worst);
}

}  // namespace
}  // namespace keel
