// The config machinery: defaults, file, --set precedence, unknown keys and bad values.
#include <gtest/gtest.h>

#include "common/config.h"

namespace {

struct DemoSection {
  int64_t steps = 10;
  double lr = 1e-3;
  bool flag = false;
  std::string name = "x";
  std::string mode = "a";
  std::vector<std::string> files;
  void visit(keel::ConfigVisitor& v) {
    v.field("steps", steps, "number of steps");
    v.field("lr", lr, "learning rate");
    v.field("flag", flag, "");
    v.field("name", name, "");
    v.choice("mode", mode, {"a", "b"}, "mode");
    v.field("files", files, "");
  }
};

std::vector<keel::ConfigSectionRef> refs(DemoSection& s) {
  return {{"train", [&s](keel::ConfigVisitor& v) { s.visit(v); }}};
}

TEST(Config, DefaultsThenFileThenOverride) {
  DemoSection s;
  auto sections = refs(s);
  keel::apply_yaml_text(sections, "train:\n  steps: 20\n  lr: 0.5\n  files: [a, b]\n", "test.yaml");
  EXPECT_EQ(s.steps, 20);
  EXPECT_DOUBLE_EQ(s.lr, 0.5);
  EXPECT_EQ(s.name, "x");
  EXPECT_EQ(s.files.size(), 2u);
  keel::apply_override(sections, "train.steps=30");
  keel::apply_override(sections, "train.mode=b");
  EXPECT_EQ(s.steps, 30);
  EXPECT_EQ(s.mode, "b");
}

TEST(Config, TextThatIsNotUtf8IsRefusedBeforeYamlReadsIt) {
  // FE FF is a UTF-16 byte-order mark to yaml-cpp, which would convert what follows.
  DemoSection s;
  auto sections = refs(s);
  const std::string bom_value = std::string("train.mode=") + "\xfe\xff" + "ab";
  try {
    keel::apply_override(sections, bom_value);
    ADD_FAILURE() << "accepted";
  } catch (const keel::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.mode: value is not valid UTF-8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(keel::apply_yaml_text(sections, "\xff\xfetrain:\n  steps: 3\n", "bom.yaml"), keel::ConfigError);
  keel::apply_override(sections, "train.mode=b");  // plain text still fine
}

TEST(Config, UnknownKeyNamesIt) {
  DemoSection s;
  auto sections = refs(s);
  try {
    keel::apply_yaml_text(sections, "train:\n  stepz: 20\n", "cfg.yaml");
    FAIL() << "no error";
  } catch (const keel::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.stepz"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cfg.yaml"), std::string::npos) << e.what();
  }
  EXPECT_THROW(keel::apply_yaml_text(sections, "trian:\n  steps: 1\n", "cfg.yaml"), keel::ConfigError);
  EXPECT_THROW(keel::apply_override(sections, "train.nope=1"), keel::ConfigError);
}

TEST(Config, BadValuesNameKeyAndValue) {
  DemoSection s;
  auto sections = refs(s);
  try {
    keel::apply_override(sections, "train.steps=ten");
    FAIL() << "no error";
  } catch (const keel::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.steps"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ten"), std::string::npos) << e.what();
  }
  EXPECT_THROW(keel::apply_override(sections, "train.steps=1.5"), keel::ConfigError);
  // Integers written as doubles beyond int64's range (fuzz/corpus/config/regression-int-out-of-range).
  EXPECT_THROW(keel::apply_override(sections, "train.steps=23e53"), keel::ConfigError);
  EXPECT_THROW(keel::apply_override(sections, "train.steps=-1e19"), keel::ConfigError);
  keel::apply_override(sections, "train.steps=1e5");
  EXPECT_EQ(s.steps, 100000);
  EXPECT_THROW(keel::apply_override(sections, "train.mode=c"), keel::ConfigError);
  EXPECT_THROW(keel::apply_override(sections, "train.flag=maybe"), keel::ConfigError);
  EXPECT_THROW(keel::apply_override(sections, "nodot=1"), keel::ConfigError);
  EXPECT_THROW(keel::apply_yaml_text(sections, "train: [1, 2]", "x"), keel::ConfigError);
  EXPECT_THROW(keel::apply_yaml_text(sections, "train: {steps: [", "x"), keel::ConfigError);
}

TEST(Config, ResolvedYamlRoundTrips) {
  DemoSection a;
  a.steps = 77;
  a.lr = 3e-4;
  a.files = {"p", "q"};
  a.mode = "b";
  std::string text = keel::to_yaml(refs(a));
  DemoSection b;
  keel::apply_yaml_text(refs(b), text, "resolved");
  EXPECT_EQ(b.steps, 77);
  EXPECT_DOUBLE_EQ(b.lr, 3e-4);
  EXPECT_EQ(b.files, a.files);
  EXPECT_EQ(b.mode, "b");
  auto flat = keel::flatten(refs(b));
  EXPECT_EQ(flat.at("train.steps"), "77");
}

}  // namespace
