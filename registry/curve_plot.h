// Loss and grad-norm curves of one or more runs, drawn by gnuplot into a PNG: left panel training
// loss (lines) with validation loss (open circles), right panel global grad norm on a log scale;
// stability events are marked on both (circle: loss spike, triangle: grad explosion, square:
// non-finite, diamond: other; "recovered" is not marked). Torch-free.
#pragma once

#include <string>
#include <vector>

#include "registry/run_registry.h"

namespace keel::registry {

struct CurveSeries {
  std::string name;                 // legend title
  std::vector<StepMetric> metrics;  // execution order
  std::vector<EventRecord> events;
};

CurveSeries curve_series(const RunData& data, const std::string& name);

// Where an event is drawn: at the execution of its step that raised it (the first execution of
// that step number since the previous event's), not at a replay of the step after a rollback. x is
// the step, or the execution index when `by_execution` (a rollback replayed steps).
struct EventMark {
  size_t execution = 0;  // index into CurveSeries::metrics
  int64_t x = 0;
  double loss = 0, grad_norm = 0;  // non-finite values: the previous finite ones
  std::string kind;
};
std::vector<EventMark> event_marks(const CurveSeries& run, bool by_execution);

struct PlotOptions {
  int width = 1400;
  int height = 520;
  std::string gnuplot;      // the program; empty: "gnuplot" found on PATH
  bool keep_files = false;  // keep the temporary data files and script (their folder is logged)
};

// The absolute path of `program` found on PATH (or `program` itself when it contains a '/' and is
// executable); "" when missing.
std::string find_on_path(const std::string& program);

// Writes the data files and the gnuplot script to a temporary folder and runs gnuplot on it.
// Throws KeelError when gnuplot is not installed (naming the package), when it fails (the script
// is kept and named), or when no PNG came out. x is the step, or the executed step count when a
// rollback replays steps (as scripts/summarize_runs.py does).
void plot_curves(const std::vector<CurveSeries>& runs, const std::string& out_png, const PlotOptions& options = {});

}  // namespace keel::registry
