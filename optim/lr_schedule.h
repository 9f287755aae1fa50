// Learning-rate schedule: linear warm-up, then either cosine decay to min_lr_ratio * lr at the last
// step, or warmup-stable-decay (WSD, MiniCPM arXiv 2404.06395): the peak LR held until the last
// decay_fraction of the steps, then a linear decay to min_lr_ratio * lr at the last step. WSD's
// stable phase lets a run be extended or branched into a decay at any point.
// A pure function of the step, so a resumed run needs no scheduler state beyond the step itself.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace keel {

struct LrSchedule {
  double peak_lr = 1e-3;
  int64_t warmup_steps = 100;
  int64_t total_steps = 1000;
  double min_lr_ratio = 0.1;
  bool wsd = false;             // warmup-stable-decay instead of cosine
  double decay_fraction = 0.2;  // wsd: share of total_steps in the final linear decay

  // LR used by the update of step `step` (0-based).
  double at(int64_t step) const {
    if (warmup_steps > 0 && step < warmup_steps)
      return peak_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    const double min_lr = peak_lr * min_lr_ratio;
    if (wsd) {
      const int64_t decay = std::max<int64_t>(1, std::llround(decay_fraction * static_cast<double>(total_steps)));
      const int64_t decay_start = total_steps - decay;
      if (step < decay_start) return peak_lr;
      // Steps decay_start .. total_steps - 1 fall linearly to min_lr, reached at the last step.
      const double progress = std::clamp(static_cast<double>(step - decay_start + 1) / static_cast<double>(decay), 0.0, 1.0);
      return peak_lr - (peak_lr - min_lr) * progress;
    }
    const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
    const double progress =
        std::clamp(static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps), 0.0, 1.0);
    return min_lr + 0.5 * (1.0 + std::cos(M_PI * progress)) * (peak_lr - min_lr);
  }
};

}  // namespace keel
