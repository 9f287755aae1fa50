// JSON-lines logs (see metrics_log.h).
#include "metrics/jsonl_log.h"

#include <fstream>
#include <sstream>

#include "common/check.h"
#include "common/fs.h"

namespace keel {

JsonLinesLog::JsonLinesLog(std::string path) : path_(std::move(path)) { open_for_append(); }

JsonLinesLog::~JsonLinesLog() {
  if (file_) std::fclose(file_);
}

void JsonLinesLog::open_for_append() {
  file_ = std::fopen(path_.c_str(), "a");
  KEEL_CHECK(file_ != nullptr, "cannot open '" << path_ << "' for appending");
}

void JsonLinesLog::append(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  KEEL_CHECK(std::fwrite(line.data(), 1, line.size(), file_) == line.size(), "write to '" << path_ << "' failed");
  std::fflush(file_);
}

void JsonLinesLog::truncate_from_step(int64_t step) {
  std::fclose(file_);
  file_ = nullptr;
  std::ifstream in(path_);
  std::ostringstream kept;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    // A torn last line (crash mid-write) is dropped too.
    if (record.is_discarded()) continue;
    if (record.contains("step") && record["step"].is_number_integer() && record["step"].get<int64_t>() >= step)
      continue;
    kept << line << "\n";
  }
  fs::write_file_atomic(path_, kept.str());
  open_for_append();
}

}  // namespace keel
