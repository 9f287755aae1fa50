// Attention-entropy heat maps with gnuplot (see heatmap_plot.h).
#include "registry/heatmap_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "common/check.h"
#include "registry/gnuplot.h"

namespace keel::registry {

HeatmapPanel entropy_panel(const DiagnosticsSummary& summary, const std::string& title) {
  HeatmapPanel panel{title, {}};
  for (const auto& layer : summary.layers) panel.values.push_back(layer.head_normalised_entropy);
  return panel;
}

void plot_heatmaps(const std::vector<HeatmapPanel>& panels, const std::string& out_png, const HeatmapOptions& options) {
  KEEL_CHECK(!panels.empty(), "plot_heatmaps: no panels to draw into '" << out_png << "'");
  KEEL_CHECK(!out_png.empty(), "plot_heatmaps: no output file");
  gnuplot::require_gnuplot(options.gnuplot, out_png);
  gnuplot::TempDir tmp;

  std::ostringstream script;
  const size_t n = panels.size();
  script << "set terminal pngcairo size " << options.panel_width * static_cast<int>(n) << ","
         << options.panel_height << " font ',10' noenhanced\n"
         << "set output " << gnuplot::quoted(out_png) << "\n"
         << "set datafile missing 'NaN'\n"
         << "set palette defined (0 '#313695', 0.25 '#74add1', 0.5 '#ffffbf', 0.75 '#f46d43', 1 '#a50026')\n"
         << "set cbrange [" << options.low << ":" << options.high << "]\n"
         << "set cblabel " << gnuplot::quoted(options.colorbar_label) << "\n"
         << "set xlabel 'head'\nset ylabel 'layer'\n"
         << "set yrange [] reverse\n"  // layer 0 at the top
         << "set tics out nomirror\n"
         << "set multiplot layout 1," << n << "\n";
  for (size_t p = 0; p < n; ++p) {
    const HeatmapPanel& panel = panels[p];
    KEEL_CHECK(!panel.values.empty(), "plot_heatmaps: panel '" << panel.title << "' has no layers");
    size_t heads = 0;
    for (const auto& row : panel.values) heads = std::max(heads, row.size());
    KEEL_CHECK(heads > 0, "plot_heatmaps: panel '" << panel.title << "' has no heads");
    // "x y value" triples (x = head, y = layer), one blank line between layers: gnuplot's grid
    // format for `with image`; a separate file of labels writes each value into its cell.
    std::ostringstream grid, labels;
    for (size_t l = 0; l < panel.values.size(); ++l) {
      for (size_t h = 0; h < heads; ++h) {
        const double v = h < panel.values[l].size() ? panel.values[l][h] : kNaN;
        grid << h << " " << l << " " << gnuplot::value(v) << "\n";
        if (std::isfinite(v)) {
          char text[32];
          std::snprintf(text, sizeof(text), "%.2f", v);
          labels << h << " " << l << " " << text << "\n";
        }
      }
      grid << "\n";
    }
    const std::string prefix = tmp.path() + "/" + std::to_string(p);
    gnuplot::write_text(prefix + ".grid", grid.str());
    gnuplot::write_text(prefix + ".labels", labels.str());
    const bool small = panel.values.size() * heads <= 256;  // room to write the numbers in
    script << "set title " << gnuplot::quoted(panel.title) << "\n"
           << "set xrange [-0.5:" << static_cast<double>(heads) - 0.5 << "]\n"
           << "set yrange [" << static_cast<double>(panel.values.size()) - 0.5 << ":-0.5]\n"
           << "set xtics 1\nset ytics 1\n"
           << "plot " << gnuplot::quoted(prefix + ".grid") << " using 1:2:3 with image notitle"
           << (small ? ", " + gnuplot::quoted(prefix + ".labels") + " using 1:2:3 with labels font ',8' notitle" : "")
           << "\n";
  }
  script << "unset multiplot\nset output\n";
  gnuplot::run_script(options.gnuplot, script.str(), out_png, tmp, "heatmap.gp");
}

}  // namespace keel::registry
