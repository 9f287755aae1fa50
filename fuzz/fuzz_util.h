// Shared by the fuzz targets: a scratch file on tmpfs holding the input, for the readers that take
// a path (token shards, safetensors), unique per process so parallel fuzzers (-jobs) do not collide.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace keel::fuzz {

inline std::string scratch_path(const char* name) {
  const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(dir) + "/keel-fuzz-" + std::to_string(::getpid()) + "-" + name;
}

// Writes the input to the scratch file; returns its path.
inline std::string write_scratch(const char* name, const uint8_t* data, size_t size) {
  const std::string path = scratch_path(name);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
  return path;
}

}  // namespace keel::fuzz
