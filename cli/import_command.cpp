// `keel import --format hf DIR --out CHECKPOINT [--set section.key=value ...] [--force]`
//
// Turns a Hugging Face GPT-2 folder (config.json + model.safetensors) into a Keel checkpoint
// folder (interop/hf_import.h) whose config.yaml is the defaults, then the --set overrides, with
// the model section taken from config.json (and, unless set, data.vocab_size fitted to the model's
// vocabulary and data.tokenizer=gpt2 for GPT-2's 50257 ids). A run starts from it with
//   keel train CHECKPOINT/config.yaml --set train.init_from=CHECKPOINT
// (or any config whose model section matches). A GPT2Config Keel cannot compute is refused with
// exit code 2 and nothing is written. This file parses, calls and prints; Torch-free.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/config.h"
#include "data/dataset_meta.h"
#include "interop/hf_import.h"
#include "worker/run_config.h"

namespace keel::cli {
namespace {

namespace stdfs = std::filesystem;

struct ImportArgs {
  std::string format, hf_dir, out;
  std::vector<std::string> overrides;
  bool force = false;
};

int run_import(const ImportArgs& a) {
  if (a.format != "hf") throw ConfigError("--format " + a.format + ": the one import format is hf");
  for (const auto& o : a.overrides)
    if (o.rfind("model.", 0) == 0)
      throw ConfigError("--set " + o + ": the model section comes from " + a.hf_dir + "/config.json");
  interop::HfImportOptions options;
  options.hf_dir = a.hf_dir;
  options.model = interop::read_hf_model_config(a.hf_dir);
  // The model's size first, so that the cross-section checks see it while the overrides apply.
  std::vector<std::string> overrides = {"model.vocab_size=" + std::to_string(options.model.vocab_size),
                                        "model.context_length=" + std::to_string(options.model.context_length)};
  auto overridden = [&](const std::string& key) {
    for (const auto& o : a.overrides)
      if (o.rfind(key + "=", 0) == 0) return true;
    return false;
  };
  if (!overridden("data.vocab_size"))  // prepare's SentencePiece size must fit the model's vocabulary
    overrides.push_back("data.vocab_size=" + std::to_string(std::min<int64_t>(DataConfig{}.vocab_size, options.model.vocab_size)));
  if (!overridden("data.tokenizer") && options.model.vocab_size == kGpt2VocabSize)
    overrides.push_back(std::string("data.tokenizer=") + kTokenizerGpt2);  // GPT-2's own 50257 ids
  overrides.insert(overrides.end(), a.overrides.begin(), a.overrides.end());
  RunConfig config = RunConfig::load("", overrides);
  config.model = options.model;
  if (config.run.recipe.empty()) config.run.recipe = "hf-import";
  config.validate();
  options.config_yaml = config.to_yaml();
  options.out_dir = a.out;
  options.overwrite = a.force;
  const auto result = interop::import_hf(options);

  const std::string out = stdfs::absolute(a.out).lexically_normal().string();
  std::cout << "keel import: " << a.hf_dir << " -> " << out << " (" << result.parameters << " parameters; "
            << config.model.num_layers << " layers, d_model " << config.model.d_model << ", " << config.model.num_heads
            << " heads, vocab " << config.model.vocab_size << ", context " << config.model.context_length << "; from";
  for (const auto& d : result.source_dtypes) std::cout << " " << d;
  std::cout << ")\n";
  if (!result.skipped.empty())
    std::cout << "skipped " << result.skipped.size() << " non-weight tensors (causal-mask buffers, a tied lm_head)\n";
  std::cout << "train from it: keel train " << out << "/config.yaml --set train.init_from=" << out << "\n";
  return 0;
}

}  // namespace

int import_command(const std::vector<std::string>& args) {
  CLI::App app("Import a Hugging Face GPT-2 folder as a Keel checkpoint (for train.init_from)", "keel import");
  ImportArgs a;
  app.add_option("--format", a.format, "import format: hf (transformers' GPT2LMHeadModel folder)")->required();
  app.add_option("dir", a.hf_dir, "Hugging Face model folder (config.json, model.safetensors)")->required();
  app.add_option("--out", a.out, "checkpoint folder to write (must not exist unless --force)")->required();
  app.add_option("--set", a.overrides, "set a non-model config key of the checkpoint's config.yaml (repeatable)")
      ->take_all();
  app.add_flag("--force", a.force, "replace an existing --out folder");
  if (int code = parse_args(app, args); code >= 0) return code;
  return run_guarded("import", [&]() -> int { return run_import(a); });
}

}  // namespace keel::cli
