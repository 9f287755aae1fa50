// Bad input refused with a clear error, and writes that fail leave nothing torn behind:
//   - run names and recipes (which name folders under runs.runs_root) cannot escape the runs root,
//     from a YAML file or from --set;
//   - the coordinator config section refuses inconsistent TLS settings;
//   - every number of the run config refuses inf and nan (each key, from a file and from --set),
//     and a config file with a key given twice, no content, or an alias bomb (nested anchors that
//     expand to 10^9 nodes) is refused naming the problem, the bomb in milliseconds;
//   - a write that fails halfway (ENOSPC, injected through KEEL_INJECT_WRITE_ERROR) leaves the old
//     file of an atomic write intact and no partial file of a durable or safetensors write.
// The fuzz targets of fuzz/ throw random input at the same parsers. Torch-free.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>

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

// "section.key" of every double field of the run config.
std::vector<std::string> double_keys() {
  class Lister : public ConfigVisitor {
   public:
    Lister(std::string section, std::vector<std::string>& out) : section_(std::move(section)), out_(out) {}
    void field(const char*, int64_t&, const char*) override {}
    void field(const char* name, double&, const char*) override { out_.push_back(section_ + "." + name); }
    void field(const char*, bool&, const char*) override {}
    void field(const char*, std::string&, const char*) override {}
    void field(const char*, std::vector<std::string>&, const char*) override {}
    void choice(const char*, std::string&, std::initializer_list<const char*>, const char*) override {}

   private:
    std::string section_;
    std::vector<std::string>& out_;
  };
  RunConfig config;
  std::vector<std::string> keys;
  for (const auto& section : config.sections()) {
    Lister lister(section.name, keys);
    section.visit(lister);
  }
  return keys;
}

TEST(BadInput, EveryNumberOfTheRunConfigRefusesInfAndNan) {
  const auto keys = double_keys();
  EXPECT_GE(keys.size(), 30u);  // 35 when written (train, data, stability, metrics, coordinator, ...)
  int refused = 0;
  for (const auto& key : keys) {
    for (const std::string bad : {"inf", "-inf", ".nan", "nan"}) {
      const std::string error = config_error({key + "=" + bad});
      EXPECT_NE(error.find(key + " = '" + bad + "' is not valid: expected a finite number"), std::string::npos)
          << key << "=" << bad << ": " << error;
      refused += !error.empty();
    }
    // From a file too.
    const auto dot = key.find('.');
    const std::string yaml = key.substr(0, dot) + ":\n  " + key.substr(dot + 1) + ": .inf\n";
    EXPECT_NE(config_error({}, yaml).find("c.yaml: " + key + " = '.inf' is not valid"), std::string::npos) << key;
  }
  std::printf("%zu number keys x 4 non-finite values: %d refused\n", keys.size(), refused);
  // The keys the issue found accepted.
  for (const std::string assignment : {"train.lr=inf", "train.grad_clip=inf", "coordinator.loss_timeout_seconds=inf",
                                       "metrics.linger_seconds=nan"})
    EXPECT_NE(config_error({assignment}).find("expected a finite number"), std::string::npos) << assignment;
}

TEST(BadInput, DuplicateKeysEmptyFilesAndAliasBombsAreRefused) {
  EXPECT_NE(config_error({}, "train:\n  lr: 0.001\n  steps: 5\n  lr: 0.1\n")
                .find("c.yaml: duplicate key 'train.lr' at line 4 (first at line 2): each key may appear once"),
            std::string::npos)
      << "the later value would have been silently ignored";
  EXPECT_NE(config_error({}, "model:\n  d_model: 64\ntrain:\n  steps: 5\nmodel:\n  d_model: 128\n")
                .find("duplicate section 'model' at line 5 (first at line 1)"),
            std::string::npos);
  EXPECT_NE(config_error({}, "# an empty recipe\n\n").find("c.yaml: the config is empty"), std::string::npos);
  EXPECT_NE(config_error({}, "\n").find("the config is empty"), std::string::npos);

  // Billion laughs: nine levels of anchors, each aliasing the previous ten times.
  std::string items = "&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]";
  for (int i = 1; i < 9; ++i) {
    items += ", &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) items += (k ? ", *a" : "*a") + std::to_string(i - 1);
    items += "]";
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string error = config_error({}, "data:\n  text_files: [" + items + "]\n");
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(error.find("c.yaml: the YAML expands to more than 100000 nodes"), std::string::npos) << error;
  std::printf("alias bomb (9 levels x 10) refused by RunConfig::load in %.1f ms\n", ms);
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
