// Greedy / temperature / top-k / top-p sampling (see sampler.h).
#include "generation/sampler.h"

#include <ATen/CPUGeneratorImpl.h>

#include <limits>

#include "common/check.h"

namespace keel {

Sampler::Sampler(const SamplerOptions& options)
    : options_(options), generator_(at::detail::createCPUGenerator(options.seed)) {
  KEEL_CHECK(options.top_k >= 0, "top-k must be >= 0, got " << options.top_k);
  KEEL_CHECK(options.top_p > 0.0 && options.top_p <= 1.0, "top-p must be in (0, 1], got " << options.top_p);
  KEEL_CHECK(options.temperature >= 0.0, "temperature must be >= 0, got " << options.temperature);
}

torch::Tensor Sampler::distribution(const torch::Tensor& logits) const {
  auto scaled = logits.detach().to(torch::kCPU, torch::kFloat).reshape({-1}) / options_.temperature;  // (V)
  const float minus_inf = -std::numeric_limits<float>::infinity();
  const int64_t V = scaled.size(0);
  if (options_.top_k > 0 && options_.top_k < V) {
    auto kth = std::get<0>(scaled.topk(options_.top_k)).min();
    scaled = scaled.masked_fill(scaled < kth, minus_inf);
  }
  if (options_.top_p < 1.0) {
    auto [sorted, order] = scaled.sort(/*dim=*/0, /*descending=*/true);
    auto cumulative = torch::softmax(sorted, 0).cumsum(0);
    // Drop a token when the tokens before it already reach top_p (the first one always stays).
    auto drop = (cumulative - torch::softmax(sorted, 0)) >= options_.top_p;
    scaled = scaled.scatter(0, order, sorted.masked_fill(drop, minus_inf));
  }
  return torch::softmax(scaled, 0);
}

int64_t Sampler::next(const torch::Tensor& logits) {
  if (greedy()) return logits.detach().reshape({-1}).argmax().item<int64_t>();
  auto probs = distribution(logits);
  return torch::multinomial(probs, 1, /*replacement=*/false, generator_).item<int64_t>();
}

}  // namespace keel
