// Driving gnuplot from C++: quoting, number formatting, a temporary folder for data files and
// scripts, and running a script into a PNG with clear errors. Shared by the curve plots
// (curve_plot.h) and the attention-entropy heat maps (heatmap_plot.h). Torch-free.
#pragma once

#include <string>

namespace keel::registry::gnuplot {

// A gnuplot single-quoted string ('' stands for one quote).
std::string quoted(const std::string& text);
// A number for a data file; "NaN" (declared missing) when not finite.
std::string value(double v);
// Writes `text` to `path`; throws KeelError when it cannot.
void write_text(const std::string& path, const std::string& text);

// A fresh temporary folder, removed on destruction unless keep() was called.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  void keep() { keep_ = true; }

 private:
  std::string path_;
  bool keep_ = false;
};

// The absolute path of `program` found on PATH (or `program` itself when it contains a '/' and is
// executable); "" when missing.
std::string find_on_path(const std::string& program);

// Finds gnuplot (`program`, empty: "gnuplot"), creates out_png's folder, writes `script` into
// tmp/<script_name> and runs it; throws KeelError when gnuplot is missing (naming the package),
// fails (the script is kept and named) or writes no PNG.
void run_script(const std::string& program, const std::string& script, const std::string& out_png, TempDir& tmp,
                const std::string& script_name);
// Checks that `program` (empty: "gnuplot") is installed, naming the package otherwise.
std::string require_gnuplot(const std::string& program, const std::string& out_png);

}  // namespace keel::registry::gnuplot
