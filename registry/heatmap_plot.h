// Attention-entropy heat maps: one panel per run (or checkpoint), layers down and heads across,
// each cell the head's normalised attention entropy (0 = one-hot, 1 = uniform) with its value
// written in, drawn by gnuplot into one PNG. Used by `keel diagnose --heatmap` and
// bench/normfree_compare.sh. Torch-free.
#pragma once

#include <string>
#include <vector>

#include "registry/diagnostics_summary.h"

namespace keel::registry {

struct HeatmapPanel {
  std::string title;
  std::vector<std::vector<double>> values;  // [layer][head]; NaN cells are left blank
};

// values[l][h] = summary.layers[l].head_normalised_entropy[h].
HeatmapPanel entropy_panel(const DiagnosticsSummary& summary, const std::string& title);

struct HeatmapOptions {
  int panel_width = 420;   // pixels per panel
  int panel_height = 380;
  double low = 0.0, high = 1.0;  // colour range
  std::string colorbar_label = "normalised attention entropy";
  std::string gnuplot;  // the program; empty: "gnuplot" found on PATH
};

// Draws the panels side by side into out_png. Throws KeelError when there is nothing to draw, when
// gnuplot is missing or fails, or when no PNG came out.
void plot_heatmaps(const std::vector<HeatmapPanel>& panels, const std::string& out_png,
                   const HeatmapOptions& options = {});

}  // namespace keel::registry
