// Bad input refused with a clear error, and writes that fail leave nothing torn behind:
//   - run names and recipes (which name folders under runs.runs_root) cannot escape the runs root,
//     from a YAML file or from --set;
//   - the coordinator config section refuses inconsistent TLS settings;
//   - a write that fails halfway (ENOSPC, injected through KEEL_INJECT_WRITE_ERROR) leaves the old
//     file of an atomic write intact and no partial file of a durable or safetensors write.
// The fuzz targets of fuzz/ throw random input at the same parsers. Torch-free.
#include <gtest/gtest.h>
#include <stdlib.h>

#include "checkpoint/safetensors.h"
#include "common/fs.h"
#include "worker/run_config.h"

namespace keel {
namespace {

// Before any write of this process: fault injection reads its variables once.
const bool kInjection = [] { return ::setenv("KEEL_INJECT_WRITE_ERROR", "inject-enospc", 1) == 0; }();

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/keel-bad-input-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string config_error(const std::vector<std::string>& overrides, const std::string& yaml = "") {
  TempDir dir;
  std::string path;
  if (!yaml.empty()) {
    path = dir.path() + "/c.yaml";
    fs::write_file_atomic(path, yaml);
  }
  try {
    RunConfig::load(path, overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(BadInput, RunNamesAndRecipesCannotEscapeTheRunsRoot) {
  for (const std::string bad : {"../escape", "a/b", "/abs", ".", "..", ".hidden", "x\\y"}) {
    EXPECT_NE(config_error({"run.name=" + bad}).find("must be a plain folder name"), std::string::npos) << bad;
    EXPECT_NE(config_error({"run.recipe=" + bad}).find("must be a plain name"), std::string::npos) << bad;
  }
  EXPECT_NE(config_error({}, "run:\n  name: ../../etc\n").find("run.name '../../etc' must be a plain folder name"),
            std::string::npos);
  EXPECT_NE(config_error({"run.name=" + std::string(300, 'n')}).find("plain folder name"), std::string::npos);
  EXPECT_NE(config_error({"run.name=tab\there"}).find("plain folder name"), std::string::npos);
  EXPECT_EQ(config_error({"run.name=my-run_2024.v1", "run.recipe=vanilla+remedy"}), "");
  // Found by fuzz_config: a stray non-UTF-8 byte did not survive the resolved config's round trip.
  EXPECT_NE(config_error({}, "run:\n  name: ru.\xe9e\n").find("valid UTF-8"), std::string::npos);
  EXPECT_NE(config_error({"data.text_files=[ok.txt, \"b\xff.txt\"]"}).find("UTF-8"), std::string::npos);
}

TEST(BadInput, CoordinatorSectionRefusesInconsistentTls) {
  EXPECT_NE(config_error({"coordinator.tls_cert=c.pem"}).find("tls_cert and coordinator.tls_key must be set together"),
            std::string::npos);
  EXPECT_NE(config_error({"coordinator.tls_cert=c.pem", "coordinator.tls_key=k.pem"}).find("needs coordinator.tls_ca"),
            std::string::npos);
  EXPECT_NE(config_error({"coordinator.loss_timeout_seconds=0"}).find("must be > 0"), std::string::npos);
  EXPECT_NE(config_error({"coordinator.token=abc"}).find("coordinator.token"), std::string::npos)
      << "tokens never go into configs: there is no such key";
}

TEST(BadInput, FailedAtomicWriteKeepsTheOldFile) {
  ASSERT_TRUE(kInjection);
  TempDir dir;
  const std::string path = dir.path() + "/inject-enospc.json";
  fs::write_file_durable(dir.path() + "/fine.json", "x", 1);  // other paths are not affected
  {
    // Write the "old" version without the injection's needle, then move it under the needle's name.
    fs::write_file_atomic(dir.path() + "/old.json", std::string("old contents"));
    fs::rename_durable(dir.path() + "/old.json", path);
  }
  try {
    fs::write_file_atomic(path, std::string(4096, 'n'));
    FAIL() << "the injected write error did not fire";
  } catch (const KeelError& e) {
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fs::read_file(path), "old contents");
  EXPECT_EQ(fs::list_dir(dir.path()), (std::vector<std::string>{"fine.json", "inject-enospc.json"}));
}

TEST(BadInput, FailedSafetensorsWriteLeavesNoPartialFile) {
  TempDir dir;
  std::vector<float> data(1024, 1.0f);
  checkpoint::TensorView view;
  view.name = "w";
  view.dtype = checkpoint::DType::F32;
  view.shape = {1024};
  view.data = data.data();
  view.nbytes = data.size() * sizeof(float);
  const std::string path = dir.path() + "/inject-enospc.safetensors";
  EXPECT_THROW(checkpoint::write_safetensors(path, {view}), KeelError);
  EXPECT_FALSE(fs::exists(path));
  checkpoint::write_safetensors(dir.path() + "/ok.safetensors", {view});
  EXPECT_EQ(checkpoint::SafetensorsFile(dir.path() + "/ok.safetensors").names(), std::vector<std::string>{"w"});
}

}  // namespace
}  // namespace keel
