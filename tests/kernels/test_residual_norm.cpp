// The fused residual add + norm (kernels/residual_norm*, model/norm.h residual_norm) against
// LibTorch in fp32 on the same values: the new residual, the normalised output and the gradients of
// the residual, the delta, the weight and the bias, for LayerNorm and RMSNorm, GPT-2's width and odd
// ones, row counts across the column kernel's chunks, strided inputs, extreme and constant rows, no
// delta (the first block), bit-identical repeats, and a whole GPT's loss and parameter gradients with
// the fused path on and off. The CUDA tests skip without a CUDA device (and in builds whose LibTorch
// has no CUDA); the dispatch tests run everywhere.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/residual_norm_torch.h"
#include "model/gpt.h"
#include "model/norm.h"
#include "model/torch_compat.h"
#include "tests/kernels/fused_gpt_comparison.h"

namespace keel {
namespace {

bool have_fused_cuda() { return kernels::fused_residual_norm_built() && torch::cuda::is_available(); }

#define SKIP_WITHOUT_FUSED_CUDA()                                                                   \
  if (!have_fused_cuda()) GTEST_SKIP() << "needs a CUDA device and a build with the fused kernels"

// max |a - b| / (max |b| + tiny), over finite reference entries.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const auto af = a.to(torch::kDouble), bf = b.to(torch::kDouble);
  return (af - bf).abs().max().item<double>() / (bf.abs().max().item<double>() + 1e-30);
}

// The independent reference: fp32 LibTorch on the same (bf16-representable) values.
torch::Tensor reference_norm(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& b, bool rms) {
  if (!rms) return torch::layer_norm(h, {h.size(-1)}, w, b, 1e-5);
  return h * torch::rsqrt(h.pow(2).mean(-1, true) + 1e-6) * w;
}

struct Case {
  int64_t rows, width;
  bool rms, with_delta;
  double scale = 1.0;  // of the residual's values
};

std::string name_of(const Case& c) {
  return std::string(c.rms ? "rms" : "layernorm") + " " + std::to_string(c.rows) + "x" + std::to_string(c.width) +
         (c.with_delta ? " +delta" : " no delta") + " scale " + std::to_string(c.scale);
}

// Runs one case through the fused Function and the fp32 reference and checks every output and
// gradient. Upstream gradients are bf16-representable so both sides see the same values.
void check_case(const Case& c, uint64_t seed) {
  const std::string what = name_of(c);
  torch::manual_seed(seed);
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  auto residual = (torch::randn({c.rows, c.width}, cuda) * c.scale + 0.5).requires_grad_(true);
  auto delta = torch::randn({c.rows, c.width}, cuda).to(torch::kBFloat16).requires_grad_(c.with_delta);
  auto weight = (torch::rand({c.width}, cuda) + 0.5).requires_grad_(true);
  auto bias = torch::randn({c.width}, cuda).requires_grad_(!c.rms);
  const auto grad_y = torch::randn({c.rows, c.width}, cuda).to(torch::kBFloat16).to(torch::kFloat);
  const auto grad_h = torch::randn({c.rows, c.width}, cuda);

  ASSERT_TRUE(kernels::fused_residual_norm_supports(residual, c.with_delta ? delta : torch::Tensor(), weight,
                                                    c.rms ? torch::Tensor() : bias))
      << what;
  auto fused = kernels::fused_residual_norm(residual, c.with_delta ? delta : torch::Tensor(), weight,
                                            c.rms ? torch::Tensor() : bias, c.rms, c.rms ? 1e-6 : 1e-5);
  EXPECT_EQ(fused.normalised.scalar_type(), torch::kBFloat16) << what;
  EXPECT_EQ(fused.residual.scalar_type(), torch::kFloat) << what;
  auto objective = (fused.normalised.to(torch::kFloat) * grad_y).sum();
  if (c.with_delta) objective = objective + (fused.residual * grad_h).sum();
  std::vector<torch::Tensor> inputs = {residual, weight};
  if (c.with_delta) inputs.push_back(delta);
  if (!c.rms) inputs.push_back(bias);
  const auto grads = torch::autograd::grad({objective}, inputs);

  auto ref_residual = residual.detach().clone().requires_grad_(true);
  auto ref_delta = delta.detach().to(torch::kFloat).requires_grad_(true);
  auto ref_weight = weight.detach().clone().requires_grad_(true);
  auto ref_bias = bias.detach().clone().requires_grad_(true);
  auto ref_h = c.with_delta ? ref_residual + ref_delta : ref_residual;
  auto ref_y = reference_norm(ref_h, ref_weight, ref_bias, c.rms);
  auto ref_objective = (ref_y * grad_y).sum();
  if (c.with_delta) ref_objective = ref_objective + (ref_h * grad_h).sum();
  std::vector<torch::Tensor> ref_inputs = {ref_residual, ref_weight};
  if (c.with_delta) ref_inputs.push_back(ref_delta);
  if (!c.rms) ref_inputs.push_back(ref_bias);
  const auto ref_grads = torch::autograd::grad({ref_objective}, ref_inputs);

  // The new residual is one fp32 add of the same two values: exact.
  EXPECT_TRUE(torch::equal(fused.residual.detach(), ref_h.detach())) << what;
  // y is rounded to bf16 (relative step 2^-8): allow one rounding plus fp32 noise.
  EXPECT_LE(relative_error(fused.normalised, ref_y), 8e-3) << what;
  // The input gradient is rstd * (g - mean(g) - xhat mean(g xhat)): a difference of terms of size
  // rstd |g| that cancel exactly for width 1 (and nearly for tiny widths), so its error is measured
  // against that size as well as against the gradient's own.
  const double cancelled_terms = (grad_y.abs().max() * weight.abs().max()).item<double>() *
                                 torch::rsqrt(ref_h.detach().var(-1, false) + 1e-5).max().item<double>();
  const double input_error = (grads[0] - ref_grads[0]).abs().max().item<double>() /
                             (ref_grads[0].abs().max().item<double>() + cancelled_terms);
  EXPECT_LE(input_error, 2e-4) << what << " residual gradient";
  EXPECT_LE(relative_error(grads[1], ref_grads[1]), 2e-4) << what << " weight gradient";
  size_t next = 2;
  if (c.with_delta) {
    EXPECT_EQ(grads[next].scalar_type(), torch::kBFloat16) << what;
    const double delta_error = (grads[next].to(torch::kFloat) - ref_grads[next]).abs().max().item<double>() /
                               (ref_grads[next].abs().max().item<double>() + cancelled_terms);
    EXPECT_LE(delta_error, 8e-3) << what << " delta gradient";
    ++next;
  }
  if (!c.rms) EXPECT_LE(relative_error(grads[next], ref_grads[next]), 2e-4) << what << " bias gradient";
}

TEST(FusedResidualNorm, MatchesLibTorchInFp32AcrossWidthsAndRowCounts) {
  SKIP_WITHOUT_FUSED_CUDA();
  uint64_t seed = 1;
  for (bool rms : {false, true}) {
    for (bool with_delta : {true, false}) {
      // GPT-2's widths, odd and tiny ones; rows across one, several and many column chunks (256 rows).
      for (int64_t width : {768, 1024, 1, 3, 33, 1000, 4097}) {
        for (int64_t rows : {1, 5, 257, 2048}) check_case({rows, width, rms, with_delta}, seed++);
      }
    }
  }
}

TEST(FusedResidualNorm, ExtremeScalesStayAccurate) {
  SKIP_WITHOUT_FUSED_CUDA();
  uint64_t seed = 100;
  for (bool rms : {false, true}) {
    for (double scale : {1e-3, 1e3, 1e5}) check_case({64, 768, rms, true, scale}, seed++);
  }
}

// A constant row (variance 0) normalises to the bias, as LibTorch; a row with an infinity gives NaN
// in that row only (the monitor sees it), never a neighbour.
TEST(FusedResidualNorm, ConstantAndNonFiniteRowsBehaveLikeLibTorch) {
  SKIP_WITHOUT_FUSED_CUDA();
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  auto residual = torch::randn({3, 64}, cuda);
  residual[0].fill_(2.5);
  residual[1][7] = std::numeric_limits<float>::infinity();
  auto weight = torch::rand({64}, cuda) + 0.5, bias = torch::randn({64}, cuda);
  auto fused = kernels::fused_residual_norm(residual, torch::Tensor(), weight, bias, false, 1e-5);
  auto ref = torch::layer_norm(residual, {64}, weight, bias, 1e-5);
  EXPECT_LE(relative_error(fused.normalised[0], ref[0]), 8e-3);
  EXPECT_TRUE(torch::isnan(fused.normalised[1].to(torch::kFloat)).any().item<bool>());
  EXPECT_LE(relative_error(fused.normalised[2], ref[2]), 8e-3);
  EXPECT_TRUE(torch::isfinite(fused.normalised[2].to(torch::kFloat)).all().item<bool>());
}

// Views that are not contiguous (a transposed residual, a sliced delta) give the values of their
// contiguous copies.
TEST(FusedResidualNorm, StridedInputsMatchContiguousOnes) {
  SKIP_WITHOUT_FUSED_CUDA();
  torch::manual_seed(21);
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  auto residual = torch::randn({96, 40}, cuda).t();                                    // (40, 96) strided
  auto delta = torch::randn({40, 192}, cuda).to(torch::kBFloat16).narrow(1, 5, 96);    // row stride 192
  auto weight = torch::rand({96}, cuda) + 0.5, bias = torch::randn({96}, cuda);
  auto strided = kernels::fused_residual_norm(residual, delta, weight, bias, false, 1e-5);
  auto dense = kernels::fused_residual_norm(residual.contiguous(), delta.contiguous(), weight, bias, false, 1e-5);
  EXPECT_TRUE(torch::equal(strided.residual, dense.residual));
  EXPECT_TRUE(torch::equal(strided.normalised, dense.normalised));
}

// The weight and bias gradients are summed in a fixed order: two backward passes give the same bits.
TEST(FusedResidualNorm, GradientsAreBitIdenticalFromRunToRun) {
  SKIP_WITHOUT_FUSED_CUDA();
  torch::manual_seed(31);
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  auto residual = torch::randn({4096, 768}, cuda).requires_grad_(true);
  auto delta = torch::randn({4096, 768}, cuda).to(torch::kBFloat16).requires_grad_(true);
  auto weight = (torch::rand({768}, cuda) + 0.5).requires_grad_(true);
  auto bias = torch::randn({768}, cuda).requires_grad_(true);
  auto grad_y = torch::randn({4096, 768}, cuda).to(torch::kBFloat16);
  auto once = [&] {
    auto out = kernels::fused_residual_norm(residual, delta, weight, bias, false, 1e-5);
    return torch::autograd::grad({out.normalised}, {residual, delta, weight, bias}, {grad_y});
  };
  const auto a = once(), b = once();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "input " << i;
}

// A small GPT under bf16 autocast (LayerNorm, RMSNorm, RMSNorm + SwiGLU): the fused residual norms against
// LibTorch's add + norm in the same model: loss and every parameter gradient.
TEST(FusedResidualNorm, GptLossAndGradientsMatchTheLibTorchPath) {
  SKIP_WITHOUT_FUSED_CUDA();
  // swiglu: the norm's bf16 output feeds two matmuls, so its gradient is summed in bf16 on the
  // fused path (in fp32 after autocast's two casts on LibTorch's).
  for (const std::string variant : {"pre_ln", "rms", "rms+swiglu"}) {
    const std::string norm = variant == "pre_ln" ? "pre_ln" : "rms";
    ModelConfig config = testing_util::small_gpt_config(3, norm);
    if (variant == "rms+swiglu") config.activation = "swiglu";
    Gpt probe(config);
    probe->to(torch::kCUDA);
    {
      compat::CudaBf16Autocast autocast(true);  // the fused path is really taken for this model
      EXPECT_TRUE(residual_norm_fused(torch::zeros({2, config.d_model}, torch::kCUDA), torch::Tensor(), *probe->ln_f));
    }
    testing_util::expect_fused_matches_libtorch(
        config, [](Gpt& model, bool on) { model->set_fused_residual_norm(on); }, 2e-3, 5e-2, variant);
  }
}

// Everywhere (CPU builds too): the CPU and fp32 keep LibTorch's add and norm, bit for bit, and the
// deferred-add forward of the model equals the plain one.
TEST(ResidualNorm, CpuTakesLibTorchsPathBitForBit) {
  torch::manual_seed(41);
  Norm norm(48, "layernorm");
  auto x = torch::randn({6, 48}), delta = torch::randn({6, 48});
  EXPECT_FALSE(residual_norm_fused(x, delta, *norm));
  auto out = residual_norm(x, delta, *norm, /*fused=*/true);
  EXPECT_TRUE(torch::equal(out.residual, x + delta));
  EXPECT_TRUE(torch::equal(out.normalised, norm(x + delta)));
  auto first = residual_norm(x, torch::Tensor(), *norm, true);
  EXPECT_TRUE(first.residual.is_same(x));
  EXPECT_TRUE(torch::equal(first.normalised, norm(x)));
  if (!kernels::fused_residual_norm_built())
    EXPECT_THROW(kernels::fused_residual_norm(x, delta, norm->weight, norm->bias, false, 1e-5), std::exception);
}

TEST(ResidualNorm, DeferredAddForwardEqualsTheTracedForwardOnTheCpu) {
  for (const std::string norm : {"pre_ln", "rms"}) {
    ModelConfig c;
    c.vocab_size = 97;
    c.context_length = 16;
    c.num_layers = 3;
    c.num_heads = 2;
    c.d_model = 32;
    c.norm = norm;
    torch::manual_seed(9);
    Gpt model(c);
    auto idx = torch::randint(0, c.vocab_size, {2, 16}, torch::kLong);
    ForwardTrace trace;
    const auto deferred = model->forward(idx);          // residual adds fused with the next norm
    const auto traced = model->forward(idx, &trace);     // the plain block-by-block forward
    EXPECT_TRUE(torch::equal(deferred, traced)) << norm;
  }
}

}  // namespace
}  // namespace keel
