// The checkpoint manifest (see manifest.h): build, write, strict read, verify. Torch-free.
#include "checkpoint/manifest.h"

#include <cstdio>
#include <ctime>
#include <set>

#include "checkpoint/safetensors.h"
#include "common/fs.h"

namespace keel::checkpoint {

namespace {

[[noreturn]] void fail(const std::string& origin, const std::string& problem) {
  throw CheckpointError(origin + ": " + problem);
}

std::string crc_hex(uint32_t crc) {
  char text[9];
  std::snprintf(text, sizeof(text), "%08x", crc);
  return text;
}

std::optional<uint32_t> parse_crc_hex(const std::string& text) {
  if (text.size() != 8) return std::nullopt;
  uint32_t value = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else return std::nullopt;
    value = value * 16 + static_cast<uint32_t>(digit);
  }
  return value;
}

// A relative path that stays inside the folder: no absolute paths, no "..", no empty parts.
bool safe_relative_name(const std::string& name) {
  if (name.empty() || name.front() == '/' || name == kManifestName) return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    std::string part = name.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = slash + 1;
  }
  return true;
}

const nlohmann::json& require(const nlohmann::json& object, const char* key, const std::string& origin,
                              const std::string& where = "") {
  auto it = object.find(key);
  if (it == object.end()) fail(origin, where + "missing \"" + key + "\"");
  return *it;
}

}  // namespace

Manifest build_manifest(const std::string& dir, int64_t step, const std::vector<std::string>& files,
                        const nlohmann::json& info) {
  KEEL_CHECK(step >= 0, "checkpoint step must be non-negative, got " << step);
  KEEL_CHECK(info.is_object(), "manifest info must be a JSON object, got " << info.dump());
  Manifest m;
  m.step = step;
  m.info = info;
  m.created_unix = static_cast<int64_t>(std::time(nullptr));
  std::set<std::string> seen;
  for (const auto& name : files) {
    KEEL_CHECK(safe_relative_name(name), "bad checkpoint file name '" << name << "'");
    KEEL_CHECK(seen.insert(name).second, "checkpoint file '" << name << "' listed twice");
    const std::string path = dir + "/" + name;
    m.files.push_back({name, keel::fs::file_size(path), keel::fs::crc32_file(path)});
  }
  return m;
}

std::string manifest_to_json(const Manifest& m) {
  nlohmann::ordered_json j;
  j["format"] = m.format;
  j["version"] = m.version;
  j["step"] = m.step;
  j["created_unix"] = m.created_unix;
  j["files"] = nlohmann::ordered_json::array();
  for (const auto& f : m.files)
    j["files"].push_back({{"name", f.name}, {"size", f.size}, {"crc32", crc_hex(f.crc32)}});
  j["info"] = m.info;
  return j.dump(2) + "\n";
}

Manifest manifest_from_json(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(origin, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(origin, "not a JSON object");
  Manifest m;
  const auto& format = require(j, "format", origin);
  if (!format.is_string() || format.get<std::string>() != kManifestFormat)
    fail(origin, "unexpected format " + format.dump() + " (want \"" + kManifestFormat + "\")");
  const auto& version = require(j, "version", origin);
  if (!version.is_number_integer() || version.get<int64_t>() != kManifestVersion)
    fail(origin, "unsupported version " + version.dump() + " (this build reads version " +
                     std::to_string(kManifestVersion) + ")");
  const auto& step = require(j, "step", origin);
  if (!step.is_number_integer() || step.get<int64_t>() < 0) fail(origin, "bad step " + step.dump());
  m.step = step.get<int64_t>();
  const auto& created = require(j, "created_unix", origin);
  if (!created.is_number_integer()) fail(origin, "bad created_unix " + created.dump());
  m.created_unix = created.get<int64_t>();
  const auto& info = require(j, "info", origin);
  if (!info.is_object()) fail(origin, "\"info\" is not an object");
  m.info = info;

  const auto& files = require(j, "files", origin);
  if (!files.is_array()) fail(origin, "\"files\" is not an array");
  std::set<std::string> seen;
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& f = files[i];
    const std::string where = "files[" + std::to_string(i) + "]: ";
    if (!f.is_object()) fail(origin, where + "not an object");
    const auto& name = require(f, "name", origin, where);
    if (!name.is_string() || !safe_relative_name(name.get<std::string>()))
      fail(origin, where + "bad file name " + name.dump());
    if (!seen.insert(name.get<std::string>()).second) fail(origin, where + "file " + name.dump() + " listed twice");
    const auto& size = require(f, "size", origin, where);
    if (!size.is_number_unsigned()) fail(origin, where + "bad size " + size.dump());
    const auto& crc = require(f, "crc32", origin, where);
    auto parsed = crc.is_string() ? parse_crc_hex(crc.get<std::string>()) : std::nullopt;
    if (!parsed) fail(origin, where + "bad crc32 " + crc.dump() + " (want 8 lowercase hex digits)");
    m.files.push_back({name.get<std::string>(), size.get<uint64_t>(), *parsed});
  }
  return m;
}

void write_manifest(const std::string& dir, const Manifest& manifest) {
  keel::fs::write_file_atomic(dir + "/" + kManifestName, manifest_to_json(manifest));
}

Manifest read_manifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestName;
  if (!keel::fs::exists(path)) throw CheckpointError(dir + ": " + kManifestName + " missing");
  std::string text;
  try {
    text = keel::fs::read_file(path);
  } catch (const keel::KeelError& e) {
    fail(path, e.what());
  }
  return manifest_from_json(text, path);
}

VerifyResult verify_checkpoint(const std::string& dir, VerifyLevel level, std::optional<int64_t> expected_step) {
  Manifest m;
  try {
    if (!keel::fs::exists(dir + "/" + kManifestName)) return VerifyResult::bad(std::string(kManifestName) + " missing");
    m = manifest_from_json(keel::fs::read_file(dir + "/" + kManifestName), kManifestName);
  } catch (const keel::KeelError& e) {
    return VerifyResult::bad(e.what());
  }
  if (expected_step && m.step != *expected_step)
    return VerifyResult::bad(std::string(kManifestName) + ": step " + std::to_string(m.step) +
                             " != folder step " + std::to_string(*expected_step));
  for (const auto& f : m.files) {
    const std::string path = dir + "/" + f.name;
    try {
      if (!keel::fs::exists(path)) return VerifyResult::bad(f.name + ": missing");
      uint64_t size = keel::fs::file_size(path);
      if (size != f.size)
        return VerifyResult::bad(f.name + ": size " + std::to_string(size) + " != manifest " + std::to_string(f.size));
      if (level == VerifyLevel::kFull) {
        uint32_t crc = keel::fs::crc32_file(path);
        if (crc != f.crc32)
          return VerifyResult::bad(f.name + ": crc32 mismatch (file " + crc_hex(crc) + ", manifest " +
                                   crc_hex(f.crc32) + ")");
      }
    } catch (const keel::KeelError& e) {
      return VerifyResult::bad(f.name + ": " + e.what());
    }
  }
  return VerifyResult::good();
}

}  // namespace keel::checkpoint
