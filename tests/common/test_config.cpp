// The config machinery: defaults, file, --set precedence, unknown keys and bad values; and the
// hostile inputs it refuses with a ConfigError naming the problem: non-finite numbers, duplicate
// keys, empty or multi-document files, deep nesting and alias bombs (refused in milliseconds).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>

#include "common/check.h"
#include "common/config.h"
#include "common/suggest.h"

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

// Issue 27 item 4: a mistyped key or section names the one it probably meant; nothing is suggested
// for a name unlike any key.
TEST(Config, UnknownKeySuggestsTheNearestKnownOne) {
  DemoSection s;
  auto sections = refs(s);
  auto message = [&](const std::function<void()>& apply) {
    try {
      apply();
    } catch (const keel::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { keel::apply_yaml_text(sections, "train:\n  setps: 20\n", "cfg.yaml"); })
                .find("unknown config key 'train.setps' (did you mean 'train.steps'?)"),
            std::string::npos);
  EXPECT_NE(message([&] { keel::apply_override(sections, "train.mdoe=b"); }).find("did you mean 'train.mode'?"),
            std::string::npos);
  EXPECT_NE(message([&] { keel::apply_yaml_text(sections, "trian:\n  steps: 1\n", "cfg.yaml"); })
                .find("unknown config section 'trian' (did you mean 'train'?)"),
            std::string::npos);
  EXPECT_EQ(message([&] { keel::apply_override(sections, "train.vocabulary=1"); }).find("did you mean"),
            std::string::npos);
}

TEST(Suggest, EditDistanceCountsASwapOnce) {
  EXPECT_EQ(keel::edit_distance("steps", "steps"), 0u);
  EXPECT_EQ(keel::edit_distance("setps", "steps"), 1u);
  EXPECT_EQ(keel::edit_distance("step", "steps"), 1u);
  EXPECT_EQ(keel::edit_distance("", "abc"), 3u);
  EXPECT_EQ(keel::closest_match("train.lr_warmup", {"train.lr", "train.warmup_steps"}), "");
  EXPECT_EQ(keel::closest_match("train.warmup_step", {"train.lr", "train.warmup_steps"}), "train.warmup_steps");
}

TEST(Check, SourceLocationsAreStrippedForUsers) {
  try {
    KEEL_CHECK(false, "outer: " << "inner failed (/src/data/loader.cpp:12)");
  } catch (const keel::KeelError& e) {
    EXPECT_EQ(keel::without_source_locations(e.what()), "outer: inner failed");
    EXPECT_NE(std::string(e.what()).find("test_config.cpp:"), std::string::npos) << "--debug keeps them";
  }
  EXPECT_EQ(keel::without_source_locations("step (3) of model.h (see x)"), "step (3) of model.h (see x)");
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
  // Doubles are written as the shortest text that reads back exactly (not 0.00029999999999999997),
  // and stay floats in YAML (1.0, not 1).
  EXPECT_NE(text.find("lr: 3e-04"), std::string::npos) << text;  // the shorter of 0.0003 and 3e-04
  EXPECT_EQ(text.find("0.00029999"), std::string::npos) << text;
  for (const double value : {0.003, 0.1, 1.0, 1e-5, 6.02e23, 0.1 + 0.2, 1.0 / 3.0}) {
    DemoSection c;
    c.lr = value;
    const std::string written = keel::to_yaml(refs(c));
    DemoSection d;
    keel::apply_yaml_text(refs(d), written, "resolved");
    EXPECT_EQ(d.lr, value) << written;  // bit-exact round trip
  }
  DemoSection one;
  one.lr = 1.0;
  EXPECT_NE(keel::to_yaml(refs(one)).find("lr: 1.0"), std::string::npos);
}

// The message of the ConfigError `body` throws ("" when it throws none).
template <typename Body>
std::string config_error(Body body) {
  try {
    body();
  } catch (const keel::ConfigError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(Config, NonFiniteNumbersAreRefusedNamingTheKey) {
  DemoSection s;
  auto sections = refs(s);
  for (const std::string bad : {"inf", "-inf", "+inf", ".inf", "-.inf", ".Inf", "nan", "NaN", ".nan", ".NaN",
                                "1e999", "-1e400", "infinity"}) {
    const std::string from_file =
        config_error([&] { keel::apply_yaml_text(sections, "train:\n  lr: " + bad + "\n", "c.yaml"); });
    EXPECT_TRUE(contains(from_file, "c.yaml: train.lr = '" + bad + "' is not valid: expected a finite number"))
        << bad << ": " << from_file;
    const std::string from_set = config_error([&] { keel::apply_override(sections, "train.lr=" + bad); });
    EXPECT_TRUE(contains(from_set, "train.lr = '" + bad + "' is not valid: expected a finite number"))
        << bad << ": " << from_set;
  }
  EXPECT_DOUBLE_EQ(s.lr, 1e-3) << "a refused value must not be stored";
  // Integers never took them (found by fuzz_config before), and large finite doubles are fine.
  EXPECT_TRUE(contains(config_error([&] { keel::apply_override(sections, "train.steps=inf"); }), "an integer"));
  keel::apply_override(sections, "train.lr=1e308");
  EXPECT_DOUBLE_EQ(s.lr, 1e308);
}

TEST(Config, RequireFiniteCatchesValuesSetByCode) {
  DemoSection s;
  EXPECT_NO_THROW(keel::require_finite(refs(s)));
  s.lr = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(contains(config_error([&] { keel::require_finite(refs(s)); }), "train.lr = inf is not valid"));
  s.lr = std::nan("");
  EXPECT_TRUE(contains(config_error([&] { keel::require_finite(refs(s)); }), "train.lr = nan is not valid"));
}

TEST(Config, DuplicateKeysAndSectionsNameTheKeyAndLines) {
  DemoSection s;
  auto sections = refs(s);
  EXPECT_EQ(config_error([&] {
              keel::apply_yaml_text(sections, "train:\n  lr: 0.1\n  steps: 2\n  lr: 0.2\n", "dup.yaml");
            }),
            "dup.yaml: duplicate key 'train.lr' at line 4 (first at line 2): each key may appear once");
  EXPECT_EQ(config_error([&] {
              keel::apply_yaml_text(sections, "train:\n  lr: 0.1\n# again\ntrain:\n  steps: 2\n", "dup.yaml");
            }),
            "dup.yaml: duplicate section 'train' at line 4 (first at line 1): each key may appear once");
  EXPECT_TRUE(contains(config_error([&] { keel::apply_yaml_text(sections, "train: {lr: 1, lr: 2}", "f.yaml"); }),
                       "duplicate key 'train.lr'"));
  // The same key in --set overrides one after the other is fine: the last one wins.
  keel::apply_override(sections, "train.steps=4");
  keel::apply_override(sections, "train.steps=5");
  EXPECT_EQ(s.steps, 5);
}

TEST(Config, EmptyAndMultiDocumentFilesAreRefused) {
  DemoSection s;
  auto sections = refs(s);
  for (const std::string empty : {"", "\n\n", "# only a comment\n# and another\n", "---\n", "~\n", "null\n"}) {
    EXPECT_EQ(config_error([&] { keel::apply_yaml_text(sections, empty, "empty.yaml"); }),
              "empty.yaml: the config is empty (no sections, only blank lines or comments)")
        << "'" << empty << "'";
  }
  EXPECT_TRUE(contains(config_error([&] {
                         keel::apply_yaml_text(sections, "train:\n  steps: 1\n---\ntrain:\n  steps: 2\n", "m.yaml");
                       }),
                       "m.yaml: holds more than one YAML document"));
  // Found by fuzz_config: yaml-cpp's LoadAll never ends on this (documents pile up until memory
  // runs out); the documents are counted up to two instead.
  const std::string endless("\x2c\x19\x19\x19\x19\x19me:u+n:\n  \x19\x19me:u+n:\n  name:", 33);
  EXPECT_FALSE(config_error([&] { keel::apply_yaml_text(sections, endless, "fuzz.yaml"); }).empty());
  EXPECT_FALSE(config_error([&] { keel::apply_yaml_text(sections, ",: :", "fuzz.yaml"); }).empty());
  // A section left empty is still allowed (it keeps its defaults).
  keel::apply_yaml_text(sections, "train:\n", "ok.yaml");
}

// `levels` levels of anchors, each a list aliasing the previous one ten times: 10^levels strings
// in a few hundred bytes.
std::string alias_bomb(int levels) {
  std::string items = "&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]";
  for (int i = 1; i < levels; ++i) {
    const std::string prev = "*a" + std::to_string(i - 1);
    items += ", &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) items += (k ? ", " : "") + prev;
    items += "]";
  }
  return items;
}

TEST(Config, AliasBombsAndDeepNestingAreRefusedQuickly) {
  DemoSection s;
  auto sections = refs(s);
  const std::string bomb = "train:\n  files: [" + alias_bomb(9) + "]\n";
  ASSERT_LT(bomb.size(), 1000u);
  const auto start = std::chrono::steady_clock::now();
  const std::string error = config_error([&] { keel::apply_yaml_text(sections, bomb, "bomb.yaml"); });
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("a 9-level alias bomb (%zu bytes, 10^9 nodes expanded) refused in %.1f ms\n", bomb.size(), ms);
  EXPECT_TRUE(contains(error, "bomb.yaml: the YAML expands to more than 100000 nodes")) << error;
  EXPECT_TRUE(contains(error, "alias bomb")) << error;
  // The same through --set, and a bomb under a key no section has (refused before being looked up).
  EXPECT_TRUE(contains(config_error([&] { keel::apply_override(sections, "train.files=[" + alias_bomb(9) + "]"); }),
                       "more than 100000 nodes"));
  EXPECT_TRUE(
      contains(config_error([&] { keel::apply_yaml_text(sections, "x: [" + alias_bomb(9) + "]\n", "b.yaml"); }),
               "more than 100000 nodes"));

  // Nesting: 100 levels of lists.
  const std::string deep = "train:\n  files: " + std::string(100, '[') + std::string(100, ']') + "\n";
  EXPECT_TRUE(contains(config_error([&] { keel::apply_yaml_text(sections, deep, "deep.yaml"); }),
                       "deep.yaml: the YAML nests deeper than 64 levels"));

  // Anchors and aliases used sparingly are still fine.
  keel::apply_yaml_text(sections, "train:\n  name: &n shared\n  files: [*n, *n, other]\n", "ok.yaml");
  EXPECT_EQ(s.files, (std::vector<std::string>{"shared", "shared", "other"}));
  // A bad value that is a big structure is described in a bounded message.
  const std::string wide = "train:\n  name: [" + alias_bomb(4) + "]\n";
  const std::string message = config_error([&] { keel::apply_yaml_text(sections, wide, "w.yaml"); });
  EXPECT_TRUE(contains(message, "w.yaml: train.name = ")) << message;
  EXPECT_LT(message.size(), 400u) << message;
}

}  // namespace
