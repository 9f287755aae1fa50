// gnuplot curves from a handmade run (gnuplot is installed on the build machines).
#include <gtest/gtest.h>

#include <filesystem>

#include "common/check.h"
#include "registry/curve_plot.h"
#include "tests/registry/registry_test_util.h"
#include "tests/registry/rollback_run_fixture.h"

namespace keel::registry {
namespace {

using testing::RunSpec;
using testing::TempDir;
using testing::write_run_dir;

// Issue 27 item 3: the events of a rolled-back step are marked where it spiked (its first
// execution, loss 9), not at the replay of that step number after the rollback.
TEST(CurvePlot, EventsAreMarkedAtTheStepThatSpikedNotAtItsReplay) {
  TempDir tmp;
  testing::write_rollback_run(tmp.path() + "/r");
  const CurveSeries run = curve_series(read_run_dir(tmp.path() + "/r"), "r");
  const auto marks = event_marks(run, /*by_execution=*/true);
  ASSERT_EQ(marks.size(), 3u);
  for (const auto& mark : marks) {
    EXPECT_EQ(mark.execution, 6u) << mark.kind;  // records 0..5, then the spike
    EXPECT_EQ(mark.x, 6);
    EXPECT_DOUBLE_EQ(mark.loss, 9.0) << mark.kind;
    EXPECT_DOUBLE_EQ(mark.grad_norm, 30.0);
  }
}

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
