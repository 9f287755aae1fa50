// Append-only JSON-lines logs of a run: metrics.jsonl (one object per step) and events.jsonl
// (stability events with evidence). Each line is flushed when written so a crash loses at most the
// line being written; a resumed or rolled-back run truncates lines past its restart step so the
// file tells one consistent history. Torch-free.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

namespace keel {

class JsonLinesLog {
 public:
  explicit JsonLinesLog(std::string path);
  ~JsonLinesLog();
  JsonLinesLog(const JsonLinesLog&) = delete;
  JsonLinesLog& operator=(const JsonLinesLog&) = delete;

  void append(const nlohmann::json& record);
  // Drops records whose "step" is >= `step` (used on resume), keeping other lines intact.
  void truncate_from_step(int64_t step);
  const std::string& path() const { return path_; }

 private:
  void open_for_append();
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace keel
