// gnuplot curves from a handmade run (gnuplot is installed on the build machines).
#include <gtest/gtest.h>

#include <filesystem>

#include "common/check.h"
#include "registry/curve_plot.h"
#include "tests/registry/registry_test_util.h"

namespace keel::registry {
namespace {

using testing::RunSpec;
using testing::TempDir;
using testing::write_run_dir;

TEST(CurvePlot, DrawsAPngOfTheHandmadeRuns) {
  TempDir tmp;
  RunSpec b;
  b.recipe = "scaled-embed";
  write_run_dir(tmp.path() + "/vanilla");
  write_run_dir(tmp.path() + "/scaled-embed", b);
  std::vector<CurveSeries> series = {curve_series(read_run_dir(tmp.path() + "/vanilla"), "vanilla"),
                                     curve_series(read_run_dir(tmp.path() + "/scaled-embed"), "it's scaled_embed")};
  const std::string png = tmp.path() + "/out/compare.png";
  plot_curves(series, png);
  ASSERT_TRUE(std::filesystem::exists(png));
  EXPECT_GT(std::filesystem::file_size(png), 10u * 1024);
}

TEST(CurvePlot, MissingGnuplotIsAClearError) {
  TempDir tmp;
  write_run_dir(tmp.path() + "/r");
  PlotOptions options;
  options.gnuplot = "keel-no-such-gnuplot";
  try {
    plot_curves({curve_series(read_run_dir(tmp.path() + "/r"), "r")}, tmp.path() + "/x.png", options);
    FAIL() << "a missing gnuplot should throw";
  } catch (const KeelError& e) {
    EXPECT_NE(std::string(e.what()).find("not found on PATH"), std::string::npos) << e.what();
  }
  EXPECT_EQ(find_on_path("keel-no-such-gnuplot"), "");
  EXPECT_FALSE(find_on_path("sh").empty());
}

}  // namespace
}  // namespace keel::registry
