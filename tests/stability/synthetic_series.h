// Synthetic, seeded per-step signals for the stability tests: a healthy run (decaying loss with
// Gaussian noise, decaying grad norms with lognormal noise) that faults are then written into.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "stability/stability_monitor.h"

namespace keel::testing_stability {

// loss = 6 exp(-t/500) + 2 + N(0, loss_noise);  grad = (0.5 + 1.5 exp(-t/300)) * exp(N(0, 0.15)).
inline std::vector<StepSignals> healthy_series(int64_t steps, uint32_t seed, double loss_noise = 0.02) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> loss_noise_dist(0.0, loss_noise);
  std::normal_distribution<double> log_grad_noise(0.0, 0.15);
  std::vector<StepSignals> series;
  series.reserve(static_cast<size_t>(steps));
  for (int64_t t = 0; t < steps; ++t) {
    StepSignals s;
    s.step = t;
    double td = static_cast<double>(t);
    s.loss = 6.0 * std::exp(-td / 500.0) + 2.0 + loss_noise_dist(rng);
    s.grad_norm = (0.5 + 1.5 * std::exp(-td / 300.0)) * std::exp(log_grad_noise(rng));
    series.push_back(s);
  }
  return series;
}

// A config with the documented defaults and the given baseline method.
inline StabilityConfig default_config(const char* method = "median_mad") {
  StabilityConfig config;
  config.method = method;
  return config;
}

// The documented defaults with the LR range test off (stability.lr_probe_steps = -1): a failure
// from scratch is cut by the fixed restart_lr_backoff. For the tests of that path.
inline StabilityConfig fixed_cut_config() {
  StabilityConfig config = default_config();
  config.lr_probe_steps = -1;
  return config;
}

}  // namespace keel::testing_stability
