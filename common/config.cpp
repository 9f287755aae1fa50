// YAML reading/writing of typed config sections (see config.h).
#include "common/config.h"
#include "common/suggest.h"

#include <charconv>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace keel {
namespace {

// Bounds on a loaded YAML document, checked before anything reads it. A config is a few hundred
// nodes, a few levels deep; YAML aliases let a few lines stand for billions of nodes ("billion
// laughs": nine levels of anchors, each aliasing the previous ten times), which anything that
// walks the document (a reader, an error message) would expand. The walk below counts nodes as
// such a walk sees them, aliases expanded, and stops at the first bound, so it costs at most
// kMaxConfigNodes steps whatever the document.
constexpr int64_t kMaxConfigNodes = 100000;
constexpr int kMaxConfigDepth = 64;

// True for well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF). Config
// strings must be: the resolved config is written back as YAML and must load to the same values
// (fuzz/fuzz_config.cpp found a run name with a stray 0xE9 byte that did not).
bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(extra) >= s.size()) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static const uint32_t min_of[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_of[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

// The 1-based line of a node read from a file ("" for one built from --set).
std::string line_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? "" : " at line " + std::to_string(mark.line + 1);
}

// A value for an error message, cut to a readable length.
std::string describe(const YAML::Node& node) {
  constexpr size_t kMaxChars = 200;
  std::string text;
  if (node.IsScalar()) {
    text = node.Scalar();
  } else {
    YAML::Emitter out;
    out << YAML::Flow << node;
    text = out.c_str();
  }
  if (text.size() > kMaxChars) text = text.substr(0, kMaxChars) + "... (" + std::to_string(text.size()) + " chars)";
  return node.IsScalar() ? "'" + text + "'" : text;
}

void check_bounds(const YAML::Node& node, int depth, int64_t& nodes, const std::string& origin) {
  if (++nodes > kMaxConfigNodes) {
    throw ConfigError(origin + ": the YAML expands to more than " + std::to_string(kMaxConfigNodes) +
                      " nodes (reached" + line_of(node) +
                      "); a config has a few hundred: anchors aliased over and over (an alias bomb?) are refused");
  }
  if (depth > kMaxConfigDepth) {
    throw ConfigError(origin + ": the YAML nests deeper than " + std::to_string(kMaxConfigDepth) + " levels" +
                      line_of(node) + "; a config is a map of sections of plain values");
  }
  if (node.IsSequence()) {
    for (const auto& item : node) check_bounds(item, depth + 1, nodes, origin);
  } else if (node.IsMap()) {
    for (const auto& kv : node) {
      check_bounds(kv.first, depth + 1, nodes, origin);
      check_bounds(kv.second, depth + 1, nodes, origin);
    }
  }
}

// A map key as text. YAML allows maps and lists as keys; a config's keys must be plain names
// (fuzz/fuzz_config.cpp found that a complex key escaped as a YAML conversion error).
std::string key_text(const YAML::Node& key, const std::string& where) {
  if (!key.IsScalar()) throw ConfigError(where + ": config keys must be plain names, not " + describe(key));
  return key.Scalar();
}

// A key given twice in one map is an error: yaml-cpp keeps both and a lookup finds the first, so
// the second would be silently ignored. `prefix` is "" for sections, "section." for keys.
void check_unique_keys(const YAML::Node& map, const std::string& prefix, const std::string& origin) {
  std::map<std::string, YAML::Node> seen;
  for (const auto& kv : map) {
    const std::string key = key_text(kv.first, origin);
    const auto [first, inserted] = seen.emplace(key, kv.first);
    if (!inserted) {
      const std::string first_line = line_of(first->second);
      throw ConfigError(origin + ": duplicate " + (prefix.empty() ? "section" : "key") + " '" + prefix + key + "'" +
                        line_of(kv.first) + (first_line.empty() ? "" : " (first" + first_line + ")") +
                        ": each key may appear once");
    }
  }
}

constexpr const char* kFiniteNumber = "a finite number (inf and nan are refused)";

// Ignores every parse event: count_documents only needs the parser to walk one document.
class IgnoreEvents : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// The documents in `text`, counted up to 2. Not YAML::LoadAll: on some malformed input it never
// ends, collecting documents until memory runs out (found by fuzz_config: ",\x19\x19me:u+n:\n  ...").
int count_documents(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  IgnoreEvents events;
  int documents = 0;
  while (documents < 2 && parser.HandleNextDocument(events)) ++documents;
  return documents;
}

// Reads fields of one section from a YAML map; remembers which keys it consumed.
class YamlReader : public ConfigVisitor {
 public:
  YamlReader(const YAML::Node& section, std::string section_name, std::string origin)
      : section_(section), section_name_(std::move(section_name)), origin_(std::move(origin)) {}

  void field(const char* name, int64_t& value, const char* doc) override {
    if (auto node = take(name)) value = parse_int(node, name);
  }
  void field(const char* name, double& value, const char* doc) override {
    if (auto node = take(name)) {
      double parsed = 0;
      try {
        parsed = node.as<double>();
      } catch (const YAML::Exception&) {
        // Say "finite" for what is a number but not a usable one: inf, nan, 1e999.
        if (node.IsScalar()) {
          const char* text = node.Scalar().c_str();
          char* end = nullptr;
          const double d = std::strtod(text, &end);
          if (*text != '\0' && *end == '\0' && !std::isfinite(d)) fail(name, node, kFiniteNumber);
        }
        fail(name, node, "a number");
      }
      // Every number of a config is finite: no key gives inf or nan a meaning, and either one
      // passes checks like "lr > 0" and then trains into NaN or never times out.
      if (!std::isfinite(parsed)) fail(name, node, kFiniteNumber);
      value = parsed;
    }
  }
  void field(const char* name, bool& value, const char* doc) override {
    if (auto node = take(name)) {
      try {
        value = node.as<bool>();
      } catch (const YAML::Exception&) {
        fail(name, node, "true or false");
      }
    }
  }
  void field(const char* name, std::string& value, const char* doc) override {
    if (auto node = take(name)) {
      if (!node.IsScalar()) fail(name, node, "a string");
      if (!valid_utf8(node.Scalar())) fail(name, node, "valid UTF-8 text");
      value = node.Scalar();
    }
  }
  void field(const char* name, std::vector<std::string>& value, const char* doc) override {
    if (auto node = take(name)) {
      if (node.IsNull()) {
        value.clear();
      } else if (node.IsSequence()) {
        value.clear();
        for (const auto& item : node) {
          if (!item.IsScalar()) fail(name, node, "a list of strings");
          if (!valid_utf8(item.Scalar())) fail(name, node, "a list of valid UTF-8 strings");
          value.push_back(item.Scalar());
        }
      } else if (node.IsScalar()) {
        value = {node.Scalar()};
      } else {
        fail(name, node, "a list of strings");
      }
    }
  }
  void choice(const char* name, std::string& value, std::initializer_list<const char*> allowed,
              const char* doc) override {
    if (auto node = take(name)) {
      std::string choices;
      for (const char* a : allowed) {
        if (node.IsScalar() && node.Scalar() == a) {
          value = a;
          return;
        }
        choices += choices.empty() ? a : std::string(" | ") + a;
      }
      fail(name, node, "one of " + choices);
    }
  }

  // Keys present in the YAML that no field consumed.
  std::vector<std::string> unknown_keys() const {
    std::vector<std::string> unknown;
    if (!section_.IsMap()) return unknown;
    for (const auto& kv : section_) {
      const std::string key = key_text(kv.first, origin_ + ": config section '" + section_name_ + "'");
      if (!consumed_.count(key)) unknown.push_back(key);
    }
    return unknown;
  }

 private:
  YAML::Node take(const char* name) {
    if (!section_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node node = section_[name];
    if (!node.IsDefined()) return node;
    consumed_.insert(name);
    return node;
  }

  int64_t parse_int(const YAML::Node& node, const char* name) {
    if (node.IsScalar()) {
      // Accept 1e5-style and underscores-free integers; reject 1.5.
      const std::string& s = node.Scalar();
      try {
        size_t pos = 0;
        long long v = std::stoll(s, &pos);
        if (pos == s.size()) return v;
        double d = std::stod(s, &pos);
        // Only doubles inside int64's range convert (2^63 itself does not); outside it the cast
        // is undefined behaviour (found by fuzz/fuzz_config: "num_heads: 23e53").
        if (pos == s.size() && d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
            d == static_cast<double>(static_cast<int64_t>(d)))
          return static_cast<int64_t>(d);
      } catch (const std::exception&) {
      }
    }
    fail(name, node, "an integer");
    return 0;
  }

  [[noreturn]] void fail(const char* name, const YAML::Node& node, const std::string& expected) {
    throw ConfigError(origin_ + ": " + section_name_ + "." + name + " = " + describe(node) +
                      " is not valid: expected " + expected);
  }

  YAML::Node section_;
  std::string section_name_;
  std::string origin_;
  std::set<std::string> consumed_;
};

std::string join_names(const std::vector<ConfigSectionRef>& sections) {
  std::string names;
  for (const auto& s : sections) names += (names.empty() ? "" : ", ") + s.name;
  return names;
}

const ConfigSectionRef* find_section(const std::vector<ConfigSectionRef>& sections,
                                     const std::string& name) {
  for (const auto& s : sections)
    if (s.name == name) return &s;
  return nullptr;
}

std::map<std::string, std::string> flatten_sections(const std::vector<ConfigSectionRef>& sections);

// "unknown config key 'train.setps' (did you mean 'train.steps'?)": the nearest key of any section,
// since a key is as often put in the wrong section as mistyped.
std::string unknown_key_message(const std::vector<ConfigSectionRef>& sections, const std::string& origin,
                                const std::string& key) {
  std::vector<std::string> known;
  for (const auto& [name, value] : flatten_sections(sections)) known.push_back(name);
  const std::string near = closest_match(key, known);
  return origin + ": unknown config key '" + key + "'" + (near.empty() ? "" : " (did you mean '" + near + "'?)");
}

void apply_node(const std::vector<ConfigSectionRef>& sections, const YAML::Node& root,
                const std::string& origin) {
  if (root.IsNull() || !root.IsDefined()) return;
  if (!root.IsMap()) throw ConfigError(origin + ": the config must be a map of sections");
  int64_t nodes = 0;
  check_bounds(root, 0, nodes, origin);
  check_unique_keys(root, "", origin);
  for (const auto& kv : root) {
    const std::string name = key_text(kv.first, origin);
    const ConfigSectionRef* section = find_section(sections, name);
    if (!section) {
      std::vector<std::string> names;
      for (const auto& known : sections) names.push_back(known.name);
      const std::string near = closest_match(name, names);
      throw ConfigError(origin + ": unknown config section '" + name + "'" +
                        (near.empty() ? "" : " (did you mean '" + near + "'?)") + " (known: " + join_names(sections) + ")");
    }
    if (kv.second.IsNull()) continue;
    if (!kv.second.IsMap())
      throw ConfigError(origin + ": config section '" + name + "' must be a map of keys");
    check_unique_keys(kv.second, name + ".", origin);
    YamlReader reader(kv.second, name, origin);
    section->visit(reader);
    auto unknown = reader.unknown_keys();
    if (!unknown.empty()) throw ConfigError(unknown_key_message(sections, origin, name + "." + unknown.front()));
  }
}

// Writes every field; docs become comments.
class YamlWriter : public ConfigVisitor {
 public:
  explicit YamlWriter(YAML::Emitter& out) : out_(out) {}
  void field(const char* name, int64_t& value, const char* doc) override { emit(name, value, doc); }
  void field(const char* name, double& value, const char* doc) override {
    // The shortest text that reads back as exactly this double (0.003, not 0.0030000000000000001).
    char buffer[64];
    const auto written = std::to_chars(buffer, buffer + sizeof(buffer), value);
    std::string text(buffer, written.ptr);
    // Keep it a float in YAML so a round trip keeps the type.
    if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
    emit(name, text, doc);
  }
  void field(const char* name, bool& value, const char* doc) override { emit(name, value, doc); }
  void field(const char* name, std::string& value, const char* doc) override {
    out_ << YAML::Key << name << YAML::Value << YAML::DoubleQuoted << value;
    if (doc && *doc) out_ << YAML::Comment(doc);
  }
  void field(const char* name, std::vector<std::string>& value, const char* doc) override {
    out_ << YAML::Key << name << YAML::Value << YAML::Flow << value;
    if (doc && *doc) out_ << YAML::Comment(doc);
  }
  void choice(const char* name, std::string& value, std::initializer_list<const char*> allowed,
              const char* doc) override {
    emit(name, value, doc);
  }

 private:
  template <typename T>
  void emit(const char* name, const T& value, const char* doc) {
    out_ << YAML::Key << name << YAML::Value << value;
    if (doc && *doc) out_ << YAML::Comment(doc);
  }
  YAML::Emitter& out_;
};

// Flattens every field to a string.
class Flattener : public ConfigVisitor {
 public:
  Flattener(std::string prefix, std::map<std::string, std::string>& out)
      : prefix_(std::move(prefix)), out_(out) {}
  void field(const char* name, int64_t& value, const char*) override { put(name, std::to_string(value)); }
  void field(const char* name, double& value, const char*) override {
    std::ostringstream s;
    s << value;
    put(name, s.str());
  }
  void field(const char* name, bool& value, const char*) override { put(name, value ? "true" : "false"); }
  void field(const char* name, std::string& value, const char*) override { put(name, value); }
  void field(const char* name, std::vector<std::string>& value, const char*) override {
    std::string joined;
    for (const auto& v : value) joined += (joined.empty() ? "" : ",") + v;
    put(name, "[" + joined + "]");
  }
  void choice(const char* name, std::string& value, std::initializer_list<const char*>,
              const char*) override {
    put(name, value);
  }

 private:
  void put(const char* name, std::string value) { out_[prefix_ + "." + name] = std::move(value); }
  std::string prefix_;
  std::map<std::string, std::string>& out_;
};

// Finds a double field holding inf or nan.
class FiniteChecker : public ConfigVisitor {
 public:
  explicit FiniteChecker(std::string section) : section_(std::move(section)) {}
  void field(const char*, int64_t&, const char*) override {}
  void field(const char* name, double& value, const char*) override {
    if (std::isfinite(value)) return;
    std::ostringstream s;
    s << section_ << "." << name << " = " << value << " is not valid: expected " << kFiniteNumber;
    throw ConfigError(s.str());
  }
  void field(const char*, bool&, const char*) override {}
  void field(const char*, std::string&, const char*) override {}
  void field(const char*, std::vector<std::string>&, const char*) override {}
  void choice(const char*, std::string&, std::initializer_list<const char*>, const char*) override {}

 private:
  std::string section_;
};

}  // namespace

void require_finite(const std::vector<ConfigSectionRef>& sections) {
  for (const auto& section : sections) {
    FiniteChecker checker(section.name);
    section.visit(checker);
  }
}

void apply_yaml_text(const std::vector<ConfigSectionRef>& sections, const std::string& yaml_text,
                     const std::string& origin) {
  // yaml-cpp reads a leading byte-order mark as UTF-16/32 and converts: the values would not be
  // the bytes given, and would not survive the write-back (fuzz: a --set value starting FE FF).
  if (!valid_utf8(yaml_text)) throw ConfigError(origin + ": not valid UTF-8 text");
  YAML::Node root;
  int documents = 0;
  try {
    documents = count_documents(yaml_text);
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(origin + ": not valid YAML: " + e.what());
  }
  // An empty file (or one of comments only) is a mistake (the wrong file, a truncated copy), not
  // "all defaults"; so is a second document, which would be silently ignored.
  if (documents > 1)
    throw ConfigError(origin + ": holds more than one YAML document (separated by '---'); a config is one");
  if (documents == 0 || root.IsNull() || !root.IsDefined())
    throw ConfigError(origin + ": the config is empty (no sections, only blank lines or comments)");
  apply_node(sections, root, origin);
}

void apply_yaml_file(const std::vector<ConfigSectionRef>& sections, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read config file '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  apply_yaml_text(sections, text.str(), path);
}

void apply_override(const std::vector<ConfigSectionRef>& sections, const std::string& assignment) {
  const auto eq = assignment.find('=');
  const auto dot = assignment.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq || dot == 0 || dot + 1 == eq)
    throw ConfigError("--set '" + assignment + "': expected section.key=value");
  const std::string section = assignment.substr(0, dot);
  const std::string key = assignment.substr(dot + 1, eq - dot - 1);
  const std::string value = assignment.substr(eq + 1);
  if (!valid_utf8(value)) throw ConfigError("--set " + section + "." + key + ": value is not valid UTF-8 text");
  YAML::Node value_node;
  try {
    value_node = value.empty() ? YAML::Node(std::string()) : YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw ConfigError("--set " + assignment + ": value is not valid YAML: " + e.what());
  }
  if (value_node.IsMap())
    throw ConfigError("--set " + assignment + ": value must be a scalar or a list");
  YAML::Node root;
  root[section][key] = value_node;
  apply_node(sections, root, "--set " + assignment);
}

std::string to_yaml(const std::vector<ConfigSectionRef>& sections) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const auto& section : sections) {
    out << YAML::Key << section.name << YAML::Value << YAML::BeginMap;
    YamlWriter writer(out);
    section.visit(writer);
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::map<std::string, std::string> flatten(const std::vector<ConfigSectionRef>& sections) {
  return flatten_sections(sections);
}

namespace {
std::map<std::string, std::string> flatten_sections(const std::vector<ConfigSectionRef>& sections) {
  std::map<std::string, std::string> out;
  for (const auto& section : sections) {
    Flattener f(section.name, out);
    section.visit(f);
  }
  return out;
}

}  // namespace

}  // namespace keel
