// The checkpoint manifest: manifest.json, written LAST into a checkpoint folder. Torch-free.
//
//   {"format": "keel-checkpoint", "version": 1, "step": 42, "created_unix": 1700000000,
//    "files": [{"name": "model.safetensors", "size": 1234, "crc32": "0a1b2c3d"}, ...],
//    "info": {...free-form...}}
//
// A folder whose manifest is present, parses, and whose listed files all have the recorded size
// and CRC-32 is a complete checkpoint; anything else is a crash leftover or damage. Resume logic
// (CheckpointStore::latest_valid) relies on this to skip bad checkpoints instead of loading them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace keel::checkpoint {

inline constexpr const char* kManifestName = "manifest.json";
inline constexpr const char* kManifestFormat = "keel-checkpoint";
inline constexpr int64_t kManifestVersion = 1;

struct ManifestFile {
  std::string name;  // path relative to the checkpoint folder ("model.safetensors", "opt/rank0.bin")
  uint64_t size = 0;
  uint32_t crc32 = 0;
};

struct Manifest {
  std::string format = kManifestFormat;
  int64_t version = kManifestVersion;
  int64_t step = 0;
  std::vector<ManifestFile> files;
  int64_t created_unix = 0;
  nlohmann::json info = nlohmann::json::object();
};

// The outcome of a verification: ok, or the first problem in words.
struct VerifyResult {
  bool ok = true;
  std::string problem;
  explicit operator bool() const { return ok; }
  static VerifyResult good() { return {}; }
  static VerifyResult bad(std::string why) { return {false, std::move(why)}; }
};

enum class VerifyLevel {
  kSizes,  // manifest + file presence + sizes (cheap: no file is read)
  kFull,   // also CRC-32 of every file (reads every byte)
};

// Sizes and CRCs of `files` (relative to `dir`), the current time and `info` (must be an object).
Manifest build_manifest(const std::string& dir, int64_t step, const std::vector<std::string>& files,
                        const nlohmann::json& info = nlohmann::json::object());

std::string manifest_to_json(const Manifest& manifest);
// Strict parse; throws CheckpointError naming `origin` and the problem.
Manifest manifest_from_json(const std::string& text, const std::string& origin);

// Writes <dir>/manifest.json durably (atomic write + folder fsync).
void write_manifest(const std::string& dir, const Manifest& manifest);
// Reads <dir>/manifest.json; throws CheckpointError ("manifest.json missing", bad JSON, ...).
Manifest read_manifest(const std::string& dir);

// Checks the manifest and the files it lists; `expected_step` also checks the recorded step.
VerifyResult verify_checkpoint(const std::string& dir, VerifyLevel level = VerifyLevel::kFull,
                               std::optional<int64_t> expected_step = std::nullopt);

}  // namespace keel::checkpoint
