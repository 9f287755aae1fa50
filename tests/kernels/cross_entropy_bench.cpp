// Micro-benchmark of the LM loss at gpt2-124m b32 (N = 32 x 1024 rows, V = 50304): the fused
// cross-entropy kernels against today's LibTorch path (cast the bf16 logits to fp32, cross_entropy),
// forward + backward down to the bf16 logits' gradient, timed with CUDA events after warm-up. Also
// the fused forward alone, the peak memory of each path and the fused loss's difference from
// LibTorch's. Usage: cross_entropy_bench [N] [V] [iterations]
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "kernels/cross_entropy_torch.h"

namespace {

// Mean ms per call of fn over `iterations` calls on the current stream, after 3 warm-up calls.
double time_ms(const std::function<void()>& fn, int iterations) {
  for (int i = 0; i < 3; ++i) fn();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, stream);
  for (int i = 0; i < iterations; ++i) fn();
  cudaEventRecord(stop, stream);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / iterations;
}

double peak_gib(const std::function<void()>& fn) {
  torch::cuda::synchronize();
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
  const auto before = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current;
  fn();
  torch::cuda::synchronize();
  const auto peak = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].peak;
  return static_cast<double>(peak - before) / (1 << 30);
}

}  // namespace

int main(int argc, char** argv) {
  if (!torch::cuda::is_available() || !keel::kernels::fused_cross_entropy_built()) {
    std::printf("cross_entropy_bench: needs a CUDA device and a build with the fused kernels\n");
    return 1;
  }
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 32768;
  const int64_t v = argc > 2 ? std::atoll(argv[2]) : 50304;
  const int iterations = argc > 3 ? std::atoi(argv[3]) : 20;
  torch::manual_seed(0);
  const auto logits = (torch::randn({n, v}, torch::kCUDA) * 2).to(torch::kBFloat16);  // (N, V) bf16
  const auto targets = torch::randint(0, v, {n}, torch::TensorOptions().dtype(torch::kLong).device(torch::kCUDA));
  auto work = logits.clone();  // the fused in-place path overwrites it with gradients; refreshed per call

  // Each step: a leaf over the logits, the loss, and the logits' gradient (autograd::grad, so no
  // accumulation into .grad is timed).
  auto libtorch_step = [&] {
    auto leaf = logits.detach().requires_grad_(true);
    auto loss = torch::nn::functional::cross_entropy(leaf.to(torch::kFloat), targets);
    auto grad = torch::autograd::grad({loss}, {leaf})[0];
  };
  auto fused_step = [&](bool in_place) {
    auto leaf = (in_place ? work : logits).detach().requires_grad_(true);
    auto loss = keel::kernels::fused_cross_entropy(leaf.view({n, v}), targets, in_place);
    auto grad = torch::autograd::grad({loss}, {leaf})[0];
  };
  auto fused_forward = [&] {
    torch::NoGradGuard no_grad;
    auto loss = keel::kernels::fused_cross_entropy(logits, targets, false);
  };

  const double t_lib = time_ms(libtorch_step, iterations);
  const double t_fused_new = time_ms([&] { fused_step(false); }, iterations);
  const double t_fused_inplace = time_ms([&] { fused_step(true); }, iterations);
  const double t_fused_fwd = time_ms(fused_forward, iterations);
  const double m_lib = peak_gib(libtorch_step);
  const double m_fused_new = peak_gib([&] { fused_step(false); });
  const double m_fused_inplace = peak_gib([&] { fused_step(true); });

  const double ref = torch::nn::functional::cross_entropy(logits.to(torch::kFloat), targets).item<double>();
  const double fused = keel::kernels::fused_cross_entropy(logits, targets, false).item<double>();
  const double gb = static_cast<double>(n) * v * 2 / 1e9;  // one pass over the bf16 logits
  std::printf("N=%lld V=%lld, %d timed iterations after 3 warm-ups (CUDA events)\n", static_cast<long long>(n),
              static_cast<long long>(v), iterations);
  std::printf("libtorch cast+cross_entropy fwd+bwd: %8.3f ms  peak +%.2f GiB\n", t_lib, m_lib);
  std::printf("fused fwd+bwd, new grad buffer:      %8.3f ms  peak +%.2f GiB\n", t_fused_new, m_fused_new);
  std::printf("fused fwd+bwd, grad over logits:     %8.3f ms  peak +%.2f GiB  (%.2fx vs libtorch)\n",
              t_fused_inplace, m_fused_inplace, t_lib / t_fused_inplace);
  std::printf("fused fwd only:                      %8.3f ms  (%.0f GB/s of logits read)\n", t_fused_fwd,
              gb / (t_fused_fwd / 1e3));
  std::printf("fused bwd (fwd+bwd in place - fwd):  %8.3f ms  (%.0f GB/s read + write)\n", t_fused_inplace - t_fused_fwd,
              2 * gb / ((t_fused_inplace - t_fused_fwd) / 1e3));
  std::printf("loss: fused %.7f libtorch %.7f |diff| %.2e\n", fused, ref, std::abs(fused - ref));
  return 0;
}
