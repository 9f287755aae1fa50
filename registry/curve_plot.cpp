// gnuplot curves (see curve_plot.h).
#include "registry/curve_plot.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <sstream>

#include "common/check.h"
#include "registry/gnuplot.h"

namespace keel::registry {
namespace {

using gnuplot::quoted;
using gnuplot::value;
using gnuplot::write_text;

int point_type(const std::string& kind) {
  if (kind == "loss_spike" || kind == "sustained_spike") return 7;  // filled circle
  if (kind == "grad_explosion") return 9;                            // filled triangle
  if (kind == "nonfinite") return 5;                                 // filled square
  return 13;                                                         // filled diamond
}

}  // namespace

CurveSeries curve_series(const RunData& data, const std::string& name) {
  return CurveSeries{name, data.metrics, data.events};
}

std::string find_on_path(const std::string& program) { return gnuplot::find_on_path(program); }

std::vector<EventMark> event_marks(const CurveSeries& run, bool by_execution) {
  std::vector<EventMark> marks;
  // Events and records are both in execution order: each event belongs to the first execution of
  // its step at or after the previous event's (a replayed step comes later in the records).
  size_t from = 0;
  for (const auto& e : run.events) {
    size_t n = from;
    while (n < run.metrics.size() && run.metrics[n].step != e.step) ++n;
    if (n == run.metrics.size()) continue;  // a step without a record (a torn file)
    from = n;
    if (e.kind == "recovered") continue;
    // A non-finite loss or grad norm has no place on the axis: mark it at the previous finite value.
    double loss = run.metrics[n].loss, grad = run.metrics[n].grad_norm;
    for (size_t back = n; (!std::isfinite(loss) || !std::isfinite(grad)) && back-- > 0;) {
      if (!std::isfinite(loss)) loss = run.metrics[back].loss;
      if (!std::isfinite(grad)) grad = run.metrics[back].grad_norm;
    }
    marks.push_back({n, by_execution ? static_cast<int64_t>(n) : run.metrics[n].step, loss, grad, e.kind});
  }
  return marks;
}

void plot_curves(const std::vector<CurveSeries>& runs, const std::string& out_png, const PlotOptions& options) {
  KEEL_CHECK(!runs.empty(), "plot_curves: no runs to draw");
  KEEL_CHECK(!out_png.empty(), "plot_curves: no output file");
  gnuplot::require_gnuplot(options.gnuplot, out_png);

  gnuplot::TempDir tmp;
  if (options.keep_files) tmp.keep();
  std::vector<std::string> loss_plots, grad_plots;
  bool replayed_any = false;
  for (const auto& run : runs)
    for (size_t i = 1; i < run.metrics.size(); ++i)
      if (run.metrics[i].step <= run.metrics[i - 1].step) replayed_any = true;

  for (size_t r = 0; r < runs.size(); ++r) {
    const CurveSeries& run = runs[r];
    const std::string color = "lc " + std::to_string(r + 1);
    const std::string prefix = tmp.path() + "/" + std::to_string(r);
    std::ostringstream data, val, marks;
    bool any_val = false, any_mark = false;
    auto x_of = [&](size_t n) { return replayed_any ? static_cast<int64_t>(n) : run.metrics[n].step; };
    for (size_t n = 0; n < run.metrics.size(); ++n) {
      const StepMetric& m = run.metrics[n];
      data << x_of(n) << " " << value(m.loss) << " " << value(m.grad_norm) << "\n";
      if (std::isfinite(m.val_loss)) {
        val << x_of(n) << " " << value(m.val_loss) << "\n";
        any_val = true;
      }
    }
    for (const auto& mark : event_marks(run, replayed_any)) {
      marks << mark.x << " " << value(mark.loss) << " " << value(mark.grad_norm) << " " << point_type(mark.kind) << "\n";
      any_mark = true;
    }
    write_text(prefix + ".dat", data.str());
    const std::string title = quoted(run.name);
    loss_plots.push_back(quoted(prefix + ".dat") + " using 1:2 with lines lw 1.5 " + color + " title " + title);
    grad_plots.push_back(quoted(prefix + ".dat") + " using 1:3 with lines lw 1.2 " + color + " title " + title);
    if (any_val) {
      write_text(prefix + ".val", val.str());
      loss_plots.push_back(quoted(prefix + ".val") + " using 1:2 with linespoints pt 6 ps 1.3 dt 2 " + color +
                           " title " + quoted(run.name + " (val)"));
    }
    if (any_mark) {
      write_text(prefix + ".events", marks.str());
      loss_plots.push_back(quoted(prefix + ".events") + " using 1:2:4 with points pt variable ps 1.6 " + color +
                           " notitle");
      grad_plots.push_back(quoted(prefix + ".events") + " using 1:3:4 with points pt variable ps 1.6 " + color +
                           " notitle");
    }
  }

  std::ostringstream script;
  script << "set terminal pngcairo size " << options.width << "," << options.height << " font ',10' noenhanced\n"
         << "set output " << quoted(out_png) << "\n"
         << "set datafile missing 'NaN'\n"
         << "set multiplot layout 1,2\n"
         << "set xlabel " << quoted(replayed_any ? "executed step (rollbacks replay steps)" : "step") << "\n"
         << "set grid\nset key top right\n"
         << "set title 'training loss (markers: stability events; o = val loss)'\n"
         << "set ylabel 'loss'\n"
         << "plot " << [&] {
              std::string s;
              for (size_t i = 0; i < loss_plots.size(); ++i) s += (i ? ", " : "") + loss_plots[i];
              return s;
            }() << "\n"
         << "set title 'global grad norm (circle: loss spike, triangle: grad explosion, square: non-finite)'\n"
         << "set ylabel 'grad norm'\nset logscale y\n"
         << "plot " << [&] {
              std::string s;
              for (size_t i = 0; i < grad_plots.size(); ++i) s += (i ? ", " : "") + grad_plots[i];
              return s;
            }() << "\n"
         << "unset multiplot\nset output\n";
  gnuplot::run_script(options.gnuplot, script.str(), out_png, tmp, "curves.gp");
  if (options.keep_files) spdlog::info("curve data and script kept in {}", tmp.path());
}

}  // namespace keel::registry
