// Model-diagnostics summaries (registry/diagnostics_summary.h) of a handmade run, from its files and
// from the registry, against values computed by hand from registry_test_util.h's numbers; the
// per-layer table; the entropy heat map PNG.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "registry/heatmap_plot.h"
#include "registry/run_summary.h"
#include "tests/registry/registry_test_util.h"

namespace keel::registry {
namespace {

using testing::RunSpec;
using testing::TempDir;
using testing::write_run_dir;

// registry_test_util.h: normalised entropies {0.95, 0.85, 0.5} and {0.2, 0.92, 0.4}, + step/1e4.
void expect_last_step_summary(const DiagnosticsSummary& d, double threshold_overloaded_layer0,
                              double threshold_overloaded_layer1) {
  const double bump = 99e-4;  // the last diagnostics step is 99
  ASSERT_FALSE(d.empty());
  EXPECT_EQ(d.step, 99);
  ASSERT_EQ(d.layers.size(), 2u);
  EXPECT_NEAR(d.mean_normalised_entropy, (0.95 + 0.85 + 0.5 + 0.2 + 0.92 + 0.4) / 6 + bump, 1e-12);
  EXPECT_NEAR(d.mean_entropy, 2 * ((0.95 + 0.85 + 0.5 + 0.2 + 0.92 + 0.4) / 6 + bump), 1e-12);
  EXPECT_NEAR(d.overload_fraction, 2.0 / 6.0, 1e-12);  // as recorded
  EXPECT_NEAR(d.mean_linearity, (0.9 + 0.95) / 2 + bump, 1e-12);
  EXPECT_NEAR(d.mean_linearity_without_residual, (0.3 + 0.4) / 2 + bump, 1e-12);
  EXPECT_NEAR(d.mean_mlp_sparsity, (0.1 + 0.3) / 2 + bump, 1e-12);
  EXPECT_NEAR(d.mean_mlp_exactly_zero, 0.025, 1e-12);
  EXPECT_NEAR(d.embedding_output_std, 0.5 + bump, 1e-12);
  EXPECT_NEAR(d.layers[0].mean_normalised_entropy, (0.95 + 0.85 + 0.5) / 3 + bump, 1e-12);
  EXPECT_NEAR(d.layers[1].mean_entropy, 2 * ((0.2 + 0.92 + 0.4) / 3 + bump), 1e-12);
  ASSERT_EQ(d.layers[1].head_normalised_entropy.size(), 3u);
  EXPECT_NEAR(d.layers[1].head_normalised_entropy[1], 0.92 + bump, 1e-12);
  EXPECT_EQ(d.layers[0].overloaded_heads, threshold_overloaded_layer0);
  EXPECT_EQ(d.layers[1].overloaded_heads, threshold_overloaded_layer1);
  EXPECT_NEAR(d.layers[1].mlp_output_rms, 3.0, 1e-12);
  EXPECT_NEAR(d.layers[0].attention_output_rms, 1.0, 1e-12);
}

TEST(DiagnosticsSummary, LastStepFromFilesAndFromTheRegistryAgree) {
  TempDir tmp;
  RunSpec spec;
  spec.diagnostics_every = 20;
  write_run_dir(tmp.path() + "/r", spec);
  RunSummary from_files = summarize_run_dir(tmp.path() + "/r");
  expect_last_step_summary(from_files.diagnostics, 1, 1);  // default threshold 0.9: 0.9599 / 0.9299

  RunRegistry registry(tmp.path() + "/registry.sqlite");
  const std::string id = registry.import_run_dir(tmp.path() + "/r", 10);
  RunSummary from_registry = summarize_registry_run(registry, id);
  expect_last_step_summary(from_registry.diagnostics, 1, 1);

  // A run's own threshold (diagnostics.entropy_overload_threshold in its config.yaml) is used.
  RunSpec strict = spec;
  strict.extra_config = "diagnostics:\n  entropy_overload_threshold: 0.8\n";
  write_run_dir(tmp.path() + "/strict", strict);
  EXPECT_NEAR(overload_threshold_of(read_run_dir(tmp.path() + "/strict").info.config_yaml), 0.8, 1e-12);
  expect_last_step_summary(summarize_run_dir(tmp.path() + "/strict").diagnostics, 2, 1);
}

TEST(DiagnosticsSummary, RunWithoutDiagnosticsIsEmptyAndOverloadIsCountedWhenNotRecorded) {
  TempDir tmp;
  write_run_dir(tmp.path() + "/plain");
  EXPECT_TRUE(summarize_run_dir(tmp.path() + "/plain").diagnostics.empty());
  EXPECT_TRUE(final_diagnostics({}).empty());
  EXPECT_NEAR(overload_threshold_of(""), kDefaultOverloadThreshold, 0);

  std::map<std::string, double> flat = {{"diag.layer0.head0.attention_normalised_entropy", 0.95},
                                        {"diag.layer0.head1.attention_normalised_entropy", 0.5},
                                        {"diag.layer2.head0.attention_normalised_entropy", 0.91},
                                        {"diag.layer2.head1.attention_normalised_entropy", 0.1},
                                        {"diag.layer2.linearity", 0.7},
                                        {"diag.layerX.linearity", 0.1},   // not a layer key: ignored
                                        {"diag.layer1", 5.0}};            // likewise
  auto d = summarize_diagnostics(flat, 7);
  EXPECT_EQ(d.step, 7);
  ASSERT_EQ(d.layers.size(), 3u);  // layer 1 missing: NaN cells
  EXPECT_TRUE(std::isnan(d.layers[1].mean_normalised_entropy));
  EXPECT_NEAR(d.overload_fraction, 2.0 / 4.0, 1e-12);
  EXPECT_NEAR(d.mean_linearity, 0.7, 1e-12);  // over the layers that have one
  EXPECT_NEAR(d.mean_normalised_entropy, (0.95 + 0.5 + 0.91 + 0.1) / 4, 1e-12);
}

TEST(DiagnosticsSummary, FinalDiagnosticsTakesTheLastRecordOnly) {
  std::vector<DiagnosticValue> values = {{4, "diag.layer0.linearity", 0.1}, {4, "diag.layer0.mlp_sparsity", 0.2},
                                         {9, "diag.layer0.linearity", 0.3}};
  auto d = final_diagnostics(values);
  EXPECT_EQ(d.step, 9);
  EXPECT_NEAR(d.layers[0].linearity, 0.3, 1e-12);
  EXPECT_TRUE(std::isnan(d.layers[0].mlp_sparsity));
}

TEST(DiagnosticsSummary, LayerAndHeadTables) {
  TempDir tmp;
  RunSpec spec;
  spec.diagnostics_every = 50;
  write_run_dir(tmp.path() + "/r", spec);
  auto d = summarize_run_dir(tmp.path() + "/r").diagnostics;
  const std::string layers = format_layer_table(d);
  EXPECT_NE(layers.find("norm. entropy"), std::string::npos) << layers;
  EXPECT_NE(layers.find("lin. w/o resid."), std::string::npos) << layers;
  EXPECT_NE(layers.find("1/3"), std::string::npos) << layers;      // overloaded heads of 3
  EXPECT_NE(layers.find("0.9599"), std::string::npos) << layers;   // layer 1 linearity at step 99
  EXPECT_EQ(std::count(layers.begin(), layers.end(), '\n'), 4);    // header, rule, 2 layers
  const std::string heads = format_head_table(d);
  EXPECT_NE(heads.find("h2"), std::string::npos) << heads;
  EXPECT_NE(heads.find("0.93"), std::string::npos) << heads;       // 0.92 + 0.0099 rounded
}

TEST(HeatmapPlot, DrawsAPngPerPanel) {
  TempDir tmp;
  RunSpec spec;
  spec.diagnostics_every = 50;
  write_run_dir(tmp.path() + "/r", spec);
  auto d = summarize_run_dir(tmp.path() + "/r").diagnostics;
  HeatmapPanel panel = entropy_panel(d, "it's a run");
  ASSERT_EQ(panel.values.size(), 2u);
  ASSERT_EQ(panel.values[0].size(), 3u);
  EXPECT_NEAR(panel.values[0][1], 0.85 + 99e-4, 1e-12);
  const std::string one = tmp.path() + "/out/one.png", two = tmp.path() + "/two.png";
  plot_heatmaps({panel}, one);
  plot_heatmaps({panel, panel}, two);
  for (const auto& png : {one, two}) {
    ASSERT_TRUE(std::filesystem::exists(png)) << png;
    std::ifstream in(png, std::ios::binary);
    char magic[8] = {};
    in.read(magic, 8);
    EXPECT_EQ(std::string(magic + 1, 3), "PNG") << png;
  }
  EXPECT_GT(std::filesystem::file_size(two), std::filesystem::file_size(one));
  EXPECT_THROW(plot_heatmaps({}, tmp.path() + "/none.png"), KeelError);
  HeatmapOptions missing;
  missing.gnuplot = "keel-no-such-gnuplot";
  EXPECT_THROW(plot_heatmaps({panel}, tmp.path() + "/x.png", missing), KeelError);
}

}  // namespace
}  // namespace keel::registry
