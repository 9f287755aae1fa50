// gnuplot curves (see curve_plot.h).
#include "registry/curve_plot.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/check.h"
#include "common/fs.h"
#include "common/process.h"

namespace keel::registry {
namespace {

// A gnuplot single-quoted string ('' stands for one quote).
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string value(double v) {
  if (!std::isfinite(v)) return "NaN";
  std::ostringstream s;
  s.precision(9);
  s << v;
  return s.str();
}

int point_type(const std::string& kind) {
  if (kind == "loss_spike" || kind == "sustained_spike") return 7;  // filled circle
  if (kind == "grad_explosion") return 9;                            // filled triangle
  if (kind == "nonfinite") return 5;                                 // filled square
  return 13;                                                         // filled diamond
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "keel-plot-XXXXXX").string();
    KEEL_CHECK(::mkdtemp(pattern.data()) != nullptr, "cannot create a temporary folder: " << std::strerror(errno));
    path_ = pattern;
  }
  ~TempDir() {
    if (keep_) return;
    try {
      keel::fs::remove_all(path_);  // not std::filesystem::remove_all (see common/fs.cpp)
    } catch (const std::exception&) {
    }
  }
  const std::string& path() const { return path_; }
  void keep() { keep_ = true; }

 private:
  std::string path_;
  bool keep_ = false;
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  KEEL_CHECK(out.good(), "cannot write '" << path << "'");
}

}  // namespace

CurveSeries curve_series(const RunData& data, const std::string& name) {
  return CurveSeries{name, data.metrics, data.events};
}

std::string find_on_path(const std::string& program) {
  if (program.find('/') != std::string::npos) return ::access(program.c_str(), X_OK) == 0 ? program : "";
  const char* path_env = std::getenv("PATH");
  std::stringstream dirs(path_env ? path_env : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0 && !std::filesystem::is_directory(candidate)) return candidate;
  }
  return "";
}

void plot_curves(const std::vector<CurveSeries>& runs, const std::string& out_png, const PlotOptions& options) {
  KEEL_CHECK(!runs.empty(), "plot_curves: no runs to draw");
  KEEL_CHECK(!out_png.empty(), "plot_curves: no output file");
  const std::string program = options.gnuplot.empty() ? "gnuplot" : options.gnuplot;
  const std::string gnuplot = find_on_path(program);
  KEEL_CHECK(!gnuplot.empty(), "cannot draw '" << out_png << "': '" << program
                                               << "' was not found on PATH (install gnuplot, e.g. apt-get install gnuplot-nox)");
  const auto out_parent = std::filesystem::path(out_png).parent_path();
  if (!out_parent.empty() && !std::filesystem::exists(out_parent)) fs::make_dirs(out_parent.string());

  TempDir tmp;
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
    std::map<int64_t, size_t> index;  // step -> its last execution
    bool any_val = false, any_mark = false;
    auto x_of = [&](size_t n) { return replayed_any ? static_cast<int64_t>(n) : run.metrics[n].step; };
    for (size_t n = 0; n < run.metrics.size(); ++n) {
      const StepMetric& m = run.metrics[n];
      index[m.step] = n;
      data << x_of(n) << " " << value(m.loss) << " " << value(m.grad_norm) << "\n";
      if (std::isfinite(m.val_loss)) {
        val << x_of(n) << " " << value(m.val_loss) << "\n";
        any_val = true;
      }
    }
    for (const auto& e : run.events) {
      auto it = index.find(e.step);
      if (e.kind == "recovered" || it == index.end()) continue;
      const StepMetric& m = run.metrics[it->second];
      // A non-finite loss or grad norm has no place on the axis: mark it at the previous finite value.
      double loss = m.loss, grad = m.grad_norm;
      for (size_t back = it->second; (!std::isfinite(loss) || !std::isfinite(grad)) && back-- > 0;) {
        if (!std::isfinite(loss)) loss = run.metrics[back].loss;
        if (!std::isfinite(grad)) grad = run.metrics[back].grad_norm;
      }
      marks << x_of(it->second) << " " << value(loss) << " " << value(grad) << " " << point_type(e.kind) << "\n";
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
  const std::string script_path = tmp.path() + "/curves.gp";
  write_text(script_path, script.str());

  ::unlink(out_png.c_str());  // a stale PNG must not pass for a new one
  const int code = process::run({gnuplot, script_path});
  if (code != 0) {
    tmp.keep();
    KEEL_CHECK(false, "gnuplot failed (exit " << code << ") drawing '" << out_png << "'; script kept at '"
                                              << script_path << "'");
  }
  KEEL_CHECK(fs::exists(out_png) && fs::file_size(out_png) > 0,
             "gnuplot wrote no image to '" << out_png << "' (script: " << script_path << ")");
  if (options.keep_files) spdlog::info("curve data and script kept in {}", tmp.path());
}

}  // namespace keel::registry
