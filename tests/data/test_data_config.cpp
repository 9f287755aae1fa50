// The "data" config section: defaults are valid, YAML and overrides reach every field, and bad
// values are ConfigErrors naming the key.
#include <gtest/gtest.h>

#include "data/data_config.h"
#include "data/prepare.h"
#include "tests/data/data_test_util.h"

namespace keel {
namespace {

using data_test::expect_error;

std::vector<keel::ConfigSectionRef> sections(DataConfig& config) {
  return {{"data", [&config](keel::ConfigVisitor& v) { config.visit(v); }}};
}

TEST(DataConfig, DefaultsAreValidAndFieldsAreReachable) {
  DataConfig config;
  EXPECT_NO_THROW(config.validate());
  keel::apply_yaml_text(sections(config),
                        "data:\n  dir: /tmp/d\n  vocab_size: 4096\n  text_files: [a.txt, b.txt]\n"
                        "  use_embedded_corpus: false\n  val_fraction: 0.1\n",
                        "test.yaml");
  EXPECT_EQ(config.shuffle_seed, 1234);
  keel::apply_override(sections(config), "data.auto_prepare=false");
  keel::apply_override(sections(config), "data.shuffle_seed=-1");
  EXPECT_EQ(config.dir, "/tmp/d");
  EXPECT_EQ(config.vocab_size, 4096);
  EXPECT_EQ(config.text_files, (std::vector<std::string>{"a.txt", "b.txt"}));
  EXPECT_FALSE(config.use_embedded_corpus);
  EXPECT_FALSE(config.auto_prepare);
  EXPECT_NO_THROW(config.validate());
  const auto flat = keel::flatten(sections(config));
  EXPECT_EQ(flat.count("data.train_pattern"), 1u);
  EXPECT_EQ(flat.count("data.corpus_cache"), 1u);
  EXPECT_EQ(flat.count("data.shuffle_seed"), 1u);

  const PrepareOptions options = prepare_options_from(config);
  EXPECT_EQ(options.out_dir, "/tmp/d");
  EXPECT_EQ(options.vocab_size, 4096);
  EXPECT_EQ(options.text_files, config.text_files);
  EXPECT_FALSE(options.use_embedded_corpus);
  EXPECT_EQ(options.shuffle_seed, -1);
  config.shuffle_seed = 77;
  EXPECT_EQ(prepare_options_from(config).shuffle_seed, 77);
  EXPECT_EQ(options.corpus, "embedded");
  keel::apply_override(sections(config), "data.corpus=large");
  EXPECT_NO_THROW(config.validate());
  EXPECT_EQ(prepare_options_from(config).corpus, "large");
  EXPECT_EQ(flat.count("data.corpus"), 1u);
}

TEST(DataConfig, BadValuesNameTheKey) {
  auto check = [](auto change, const std::string& key) {
    DataConfig config;
    change(config);
    expect_error<keel::ConfigError>([&] { config.validate(); }, {key});
  };
  check([](DataConfig& c) { c.vocab_size = 100; }, "data.vocab_size");
  check([](DataConfig& c) { c.vocab_size = 65537; }, "data.vocab_size");
  check([](DataConfig& c) { c.val_fraction = 0.0; }, "data.val_fraction");
  check([](DataConfig& c) { c.val_fraction = 0.6; }, "data.val_fraction");
  check([](DataConfig& c) { c.train_pattern = ""; }, "data.train_pattern");
  check([](DataConfig& c) { c.val_pattern = ""; }, "data.val_pattern");
  check([](DataConfig& c) { c.dir = ""; }, "data.dir");
  check([](DataConfig& c) { c.corpus = "huge"; }, "data.corpus");
  check([](DataConfig& c) { c.corpus = "large"; }, "data.dir");  // not into the embedded dataset's folder
  DataConfig edge;
  edge.vocab_size = 65536;
  edge.val_fraction = 0.5;
  EXPECT_NO_THROW(edge.validate());
  EXPECT_THROW(keel::apply_override(sections(edge), "data.vocab_sise=1"), keel::ConfigError);
}

}  // namespace
}  // namespace keel
