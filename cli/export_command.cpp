// `keel export RUN_OR_CHECKPOINT --format hf --out DIR [--data DIR] [--no-tokenizer] [--force]`
//
// Writes a Hugging Face GPT-2 folder (interop/hf_export.h) from a checkpoint folder or a run
// directory (its newest checkpoint that verifies; TP shards are gathered). The model section comes
// from the checkpoint's config.yaml, the tokenizer from its dataset (data.dir, or --data;
// data/dataset_meta.h dataset_tokenizer). A model GPT-2 cannot express is refused with exit code 2
// and nothing is written. This file parses, calls and prints; Torch-free.
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/checkpoint_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/check.h"
#include "common/config.h"
#include "data/dataset_meta.h"
#include "interop/hf_config.h"
#include "interop/hf_export.h"
#include "worker/run_config.h"

namespace keel::cli {
namespace {

namespace stdfs = std::filesystem;

struct ExportArgs {
  std::string checkpoint, format, out, data_dir;
  bool no_tokenizer = false, force = false;
};

int run_export(const ExportArgs& a) {
  if (a.format != "hf") throw ConfigError("--format " + a.format + ": the one export format is hf");
  const std::string dir = stdfs::absolute(resolve_checkpoint(a.checkpoint, "export")).lexically_normal().string();
  std::string config_path = dir + "/config.yaml";
  if (!stdfs::exists(config_path))  // a TP shard writer's folder: the run's own config
    config_path = stdfs::path(dir).parent_path().parent_path().string() + "/config.yaml";
  KEEL_CHECK(stdfs::exists(config_path), "no config.yaml in '" << dir << "' or its run directory");
  const RunConfig config = RunConfig::load(config_path, {});
  interop::check_hf_expressible(config.model);  // refuse before looking for anything else

  interop::HfExportOptions options;
  options.checkpoint_dir = dir;
  options.model = config.model;
  options.out_dir = a.out;
  options.overwrite = a.force;
  options.provenance = {{"checkpoint", dir}, {"recipe", config.run.recipe}};
  if (!a.no_tokenizer) {
    const std::string data_dir = a.data_dir.empty() ? config.data.dir : a.data_dir;
    try {
      options.tokenizer = dataset_tokenizer(data_dir, config.data.tokenizer_cache);
    } catch (const std::exception& e) {
      KEEL_CHECK(false, "cannot find the tokenizer of the run's dataset (" << e.what()
                                                                         << "); point --data at the dataset folder, or "
                                                                            "pass --no-tokenizer to export the model alone");
    }
  }
  const auto result = interop::export_hf(options);
  std::cout << "keel export: " << dir << " -> " << a.out << " (Hugging Face GPT-2, " << result.parameters
            << " parameters, vocab " << result.vocab_size;
  if (result.dropped_vocab_rows > 0) std::cout << "; " << result.dropped_vocab_rows << " padding rows cut";
  std::cout << "; tokenizer " << (options.tokenizer ? options.tokenizer->kind : std::string("none")) << ")\n";
  std::cout << "files:";
  for (const auto& f : result.files) std::cout << " " << f;
  std::cout << "\nload with: AutoModelForCausalLM.from_pretrained(\"" << a.out << "\")\n";
  return 0;
}

}  // namespace

int export_command(const std::vector<std::string>& args) {
  CLI::App app("Export a checkpoint as a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer)",
               "keel export");
  ExportArgs a;
  app.add_option("checkpoint", a.checkpoint, "checkpoint folder, or a run directory (its newest checkpoint)")
      ->required();
  app.add_option("--format", a.format, "export format: hf (transformers' GPT2LMHeadModel)")->required();
  app.add_option("--out", a.out, "output folder (must not exist unless --force)")->required();
  app.add_option("--data", a.data_dir, "dataset folder whose tokenizer to export (default: the run's data.dir)");
  app.add_flag("--no-tokenizer", a.no_tokenizer, "export the model only (vocabulary kept at model.vocab_size)");
  app.add_flag("--force", a.force, "replace an existing --out folder");
  if (int code = parse_args(app, args); code >= 0) return code;
  return run_guarded("export", [&]() -> int { return run_export(a); });
}

}  // namespace keel::cli
