// Driving gnuplot (see gnuplot.h).
#include "registry/gnuplot.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/check.h"
#include "common/fs.h"
#include "common/process.h"

namespace keel::registry::gnuplot {

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

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  KEEL_CHECK(out.good(), "cannot write '" << path << "'");
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "keel-plot-XXXXXX").string();
  KEEL_CHECK(::mkdtemp(pattern.data()) != nullptr, "cannot create a temporary folder: " << std::strerror(errno));
  path_ = pattern;
}

TempDir::~TempDir() {
  if (keep_) return;
  try {
    keel::fs::remove_all(path_);  // not std::filesystem::remove_all (see common/fs.cpp)
  } catch (const std::exception&) {
  }
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

std::string require_gnuplot(const std::string& program_or_empty, const std::string& out_png) {
  const std::string program = program_or_empty.empty() ? "gnuplot" : program_or_empty;
  const std::string path = find_on_path(program);
  KEEL_CHECK(!path.empty(), "cannot draw '" << out_png << "': '" << program
                                            << "' was not found on PATH (install gnuplot, e.g. apt-get install gnuplot-nox)");
  return path;
}

void run_script(const std::string& program, const std::string& script, const std::string& out_png, TempDir& tmp,
                const std::string& script_name) {
  const std::string gnuplot = require_gnuplot(program, out_png);
  const auto out_parent = std::filesystem::path(out_png).parent_path();
  if (!out_parent.empty() && !std::filesystem::exists(out_parent)) fs::make_dirs(out_parent.string());
  const std::string script_path = tmp.path() + "/" + script_name;
  write_text(script_path, script);
  ::unlink(out_png.c_str());  // a stale PNG must not pass for a new one
  const int code = process::run({gnuplot, script_path});
  if (code != 0) {
    tmp.keep();
    KEEL_CHECK(false, "gnuplot failed (exit " << code << ") drawing '" << out_png << "'; script kept at '"
                                              << script_path << "'");
  }
  KEEL_CHECK(fs::exists(out_png) && fs::file_size(out_png) > 0,
             "gnuplot wrote no image to '" << out_png << "' (script: " << script_path << ")");
}

}  // namespace keel::registry::gnuplot
