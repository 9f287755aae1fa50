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
