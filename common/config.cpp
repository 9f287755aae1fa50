// YAML reading/writing of typed config sections (see config.h).
#include "common/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <fstream>
#include <set>
#include <sstream>

namespace keel {
namespace {

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

std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.c_str();
}

// A map key as text. YAML allows maps and lists as keys; a config's keys must be plain names
// (fuzz/fuzz_config.cpp found that a complex key escaped as a YAML conversion error).
std::string key_text(const YAML::Node& key, const std::string& where) {
  if (!key.IsScalar()) throw ConfigError(where + ": config keys must be plain names, not " + describe(key));
  return key.Scalar();
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
      try {
        value = node.as<double>();
      } catch (const YAML::Exception&) {
        fail(name, node, "a number");
      }
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

void apply_node(const std::vector<ConfigSectionRef>& sections, const YAML::Node& root,
                const std::string& origin) {
  if (root.IsNull() || !root.IsDefined()) return;
  if (!root.IsMap()) throw ConfigError(origin + ": the config must be a map of sections");
  for (const auto& kv : root) {
    const std::string name = key_text(kv.first, origin);
    const ConfigSectionRef* section = find_section(sections, name);
    if (!section)
      throw ConfigError(origin + ": unknown config section '" + name +
                        "' (known: " + join_names(sections) + ")");
    if (kv.second.IsNull()) continue;
    if (!kv.second.IsMap())
      throw ConfigError(origin + ": config section '" + name + "' must be a map of keys");
    YamlReader reader(kv.second, name, origin);
    section->visit(reader);
    auto unknown = reader.unknown_keys();
    if (!unknown.empty()) throw ConfigError(origin + ": unknown config key '" + name + "." + unknown.front() + "'");
  }
}

// Writes every field; docs become comments.
class YamlWriter : public ConfigVisitor {
 public:
  explicit YamlWriter(YAML::Emitter& out) : out_(out) {}
  void field(const char* name, int64_t& value, const char* doc) override { emit(name, value, doc); }
  void field(const char* name, double& value, const char* doc) override {
    std::ostringstream s;
    s.precision(17);
    s << value;
    std::string text = s.str();
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

}  // namespace

void apply_yaml_text(const std::vector<ConfigSectionRef>& sections, const std::string& yaml_text,
                     const std::string& origin) {
  // yaml-cpp reads a leading byte-order mark as UTF-16/32 and converts: the values would not be
  // the bytes given, and would not survive the write-back (fuzz: a --set value starting FE FF).
  if (!valid_utf8(yaml_text)) throw ConfigError(origin + ": not valid UTF-8 text");
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(origin + ": not valid YAML: " + e.what());
  }
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
  std::map<std::string, std::string> out;
  for (const auto& section : sections) {
    Flattener f(section.name, out);
    section.visit(f);
  }
  return out;
}

}  // namespace keel
