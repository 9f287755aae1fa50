// Durable file-system helpers: atomic writes (tmp + fsync + rename), directory fsync, checksums.
// Everything that persists run state (checkpoints, manifests, configs) goes through these so a
// crash at any moment leaves either the old file or the new one, never a torn one. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel::fs {

// Writes `data` to `path` atomically: `path.tmp.PID`, fsync, rename over `path`, fsync the folder.
void write_file_atomic(const std::string& path, const void* data, size_t size);
void write_file_atomic(const std::string& path, const std::string& text);

// Writes a file and fsyncs it (no rename); for files inside a folder that is renamed as a whole.
void write_file_durable(const std::string& path, const void* data, size_t size);

// A file written in pieces and made durable: created (truncated) on construction, appended to by
// write(), fsynced and closed by finish(). Destroyed unfinished (an error, an exception), it is
// closed and removed, so no torn file stays behind under its name.
//
// Fault injection for tests, loud when on: a file whose path contains the text of the environment
// variable KEEL_INJECT_WRITE_ERROR fails its first write halfway with ENOSPC (a full disk);
// one whose path contains KEEL_INJECT_CRASH_IN_WRITE gets half its first write and then the
// process is killed with SIGKILL (a crash in the middle of a save). Every durable write of Keel
// (write_file_durable, write_file_atomic, safetensors files) goes through this class.
class DurableFile {
 public:
  explicit DurableFile(std::string path);
  ~DurableFile();
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;
  void write(const void* data, size_t size);
  void finish();  // fsync + close; the file is complete
  const std::string& path() const { return path_; }

 private:
  void fail(const std::string& why);  // closes, removes, throws KeelError
  std::string path_;
  int fd_ = -1;
  bool inject_error_ = false, inject_crash_ = false;
};

std::string read_file(const std::string& path);
void fsync_path(const std::string& path);  // file or directory
void make_dirs(const std::string& path);
bool exists(const std::string& path);
uint64_t file_size(const std::string& path);
void remove_all(const std::string& path);
// Renames `from` to `to` (atomic on one file system) and fsyncs the parent of `to`.
void rename_durable(const std::string& from, const std::string& to);
std::vector<std::string> list_dir(const std::string& path);  // names only, sorted

// CRC-32 (zlib polynomial) of a byte range, and of a whole file streamed in chunks.
uint32_t crc32(const void* data, size_t size, uint32_t seed = 0);
uint32_t crc32_file(const std::string& path);

}  // namespace keel::fs
