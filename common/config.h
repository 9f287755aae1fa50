// Typed configuration machinery shared by every component.
//
// Each component owns a plain struct for its config section (ModelConfig, TrainConfig, ...) with
// documented defaults and a `visit(ConfigVisitor&)` method that names every field once. One
// generic reader (YAML file, then `--set section.key=value` overrides) and one writer (the resolved
// config saved with each run and checkpoint) work on any section through that method, so adding a
// field is one line and unknown keys are always errors. Precedence: CLI > file > defaults.
// Torch-free.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace keel {

// A bad key or value in a config file or override. Callers map it to exit code 2.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Visits the fields of one section. Implementations read, write or document them.
class ConfigVisitor {
 public:
  virtual ~ConfigVisitor() = default;
  virtual void field(const char* name, int64_t& value, const char* doc) = 0;
  virtual void field(const char* name, double& value, const char* doc) = 0;
  virtual void field(const char* name, bool& value, const char* doc) = 0;
  virtual void field(const char* name, std::string& value, const char* doc) = 0;
  virtual void field(const char* name, std::vector<std::string>& value, const char* doc) = 0;
  // A string restricted to `allowed`; any other value is a ConfigError naming the choices.
  virtual void choice(const char* name, std::string& value,
                      std::initializer_list<const char*> allowed, const char* doc) = 0;
};

// One named section: its name and a function that visits its fields. Built by the aggregate config.
struct ConfigSectionRef {
  std::string name;
  std::function<void(ConfigVisitor&)> visit;
};

// Applies a YAML document (a map of sections) onto the sections. Unknown sections or keys and
// ill-typed values throw ConfigError naming `origin` (a file name) and the key. Also refused, each
// with a ConfigError: an empty document (only blank lines or comments) or more than one, a key or
// section given twice (named, with both lines), a number that is not finite (inf, nan, 1e999: no
// key accepts one; a key that ever needs one gets a visitor method of its own), and a document
// that expands to more than 100000 nodes or nests deeper than 64 levels (YAML aliases of anchors
// can make a few lines stand for billions of nodes; the bound is checked in at most 100000 steps,
// before anything else reads the document).
void apply_yaml_text(const std::vector<ConfigSectionRef>& sections, const std::string& yaml_text,
                     const std::string& origin);
void apply_yaml_file(const std::vector<ConfigSectionRef>& sections, const std::string& path);

// Applies one `section.key=value` override; the value is parsed as a YAML scalar or flow list.
void apply_override(const std::vector<ConfigSectionRef>& sections, const std::string& assignment);

// Throws ConfigError naming the first double field (section.key) that holds inf or nan: for values
// set by code rather than read (the reader refuses them already). Only reads the fields.
void require_finite(const std::vector<ConfigSectionRef>& sections);

// The resolved config as YAML (every field of every section, with its doc as a comment).
std::string to_yaml(const std::vector<ConfigSectionRef>& sections);

// Flattened `section.key -> value` strings (for comparing runs and for the registry).
std::map<std::string, std::string> flatten(const std::vector<ConfigSectionRef>& sections);

}  // namespace keel
