// The terminal progress line (step/total, loss, grad norm, lr, tokens/s, ETA), with a bar when
// stderr is a terminal. Torch-free.
#pragma once

#include <cstdint>
#include <string>

namespace keel {

struct ProgressSample {
  int64_t step = 0;  // completed steps
  int64_t total_steps = 0;
  double loss = 0, grad_norm = 0, lr = 0, tokens_per_second = 0;
  double eta_seconds = 0;
};

// One line of text (no newline). With `bar_width` > 0 a bar of that width leads the line.
std::string format_progress(const ProgressSample& sample, int bar_width);
std::string format_duration(double seconds);  // "1h02m", "3m05s", "42s"

class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool interactive) : interactive_(interactive) {}
  void update(const ProgressSample& sample);  // rewrites the line on a terminal, else prints it
  void message(const std::string& text);      // a full line that does not disturb the bar
  void finish();

 private:
  bool interactive_;
  bool line_open_ = false;
};

bool stderr_is_terminal();

// True (and reset) when a progress line is drawn without a newline: a log sink writing to the same
// terminal first clears it, and the next update redraws it.
bool take_open_progress_line();

}  // namespace keel
