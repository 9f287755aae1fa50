// Progress line formatting (see progress.h).
#include "worker/progress.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <iostream>

#include <fmt/format.h>

namespace keel {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string format_progress(const ProgressSample& p, int bar_width) {
  std::string bar;
  if (bar_width > 0 && p.total_steps > 0) {
    const int filled = static_cast<int>(bar_width * static_cast<double>(p.step) / p.total_steps);
    bar = "[" + std::string(filled, '#') + std::string(bar_width - filled, '.') + "] ";
  }
  const double tps = p.tokens_per_second;
  const std::string rate = tps >= 1e6 ? fmt::format("{:.2f}M", tps / 1e6)
                           : tps >= 1e3 ? fmt::format("{:.1f}k", tps / 1e3)
                                        : fmt::format("{:.0f}", tps);
  return fmt::format("{}step {}/{} | loss {:.4f} | gnorm {:.3f} | lr {:.2e} | {} tok/s | ETA {}", bar, p.step,
                     p.total_steps, p.loss, p.grad_norm, p.lr, rate, format_duration(p.eta_seconds));
}

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

namespace {
std::atomic<bool> g_progress_line_open{false};
}  // namespace

bool take_open_progress_line() { return g_progress_line_open.exchange(false); }

void ProgressPrinter::update(const ProgressSample& sample) {
  if (interactive_) {
    std::cerr << "\r\033[K" << format_progress(sample, 24) << std::flush;
    line_open_ = true;
    g_progress_line_open = true;
  } else {
    std::cerr << format_progress(sample, 0) << "\n" << std::flush;
  }
}

void ProgressPrinter::message(const std::string& text) {
  if (line_open_ && take_open_progress_line()) std::cerr << "\r\033[K";
  std::cerr << text << "\n" << std::flush;
  line_open_ = false;
}

void ProgressPrinter::finish() {
  if (line_open_ && take_open_progress_line()) std::cerr << "\n" << std::flush;
  line_open_ = false;
}

}  // namespace keel
