// Helpers shared by the coordinator tests: temporary folders and concurrent registration.
#pragma once

#include <stdlib.h>

#include <functional>
#include <future>
#include <string>
#include <vector>

#include "common/fs.h"

namespace keel::coord::testing {

// A fresh folder under /tmp, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/keel-coord-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { keel::fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `n` calls of `f(i)` on their own threads (a rendezvous needs them all at once); returns
// the results in index order. Exceptions propagate from get().
template <typename F>
auto run_concurrently(int n, F f) -> std::vector<decltype(f(0))> {
  std::vector<std::future<decltype(f(0))>> futures;
  for (int i = 0; i < n; ++i) futures.push_back(std::async(std::launch::async, f, i));
  std::vector<decltype(f(0))> out;
  for (auto& fu : futures) out.push_back(fu.get());
  return out;
}

}  // namespace keel::coord::testing
