// `keel-tokenize TOKENIZER.model TEXT_FILE OUT.bin`: encodes a plain-text file with a run's
// SentencePiece tokenizer into an llm.c-layout token shard (data/token_shard.h). Its own program
// for the same reason as keel-prepare: SentencePiece bundles a protobuf-lite that clashes with the
// libprotobuf LibTorch and gRPC load, so `keel diagnose --text` runs this as a child process.
// Run by hand it reports how many tokens it wrote; `keel diagnose`/`keel generate` pass --quiet,
// because its terminal is their user's and that count is theirs to tell (issue 27). Errors are
// printed either way.
#include <spdlog/spdlog.h>

#include <iostream>
#include <limits>

#include "cli/cli_util.h"
#include "common/check.h"
#include "common/crash_handler.h"
#include "common/fs.h"
#include "data/token_shard.h"
#include "data/text_tokenizer.h"

int main(int argc, char** argv) {
  spdlog::set_pattern("[%H:%M:%S] [%^%l%$] %v");
  keel::install_crash_handler();
  CLI::App app("Encode a text file into a token shard with a SentencePiece tokenizer", "keel-tokenize");
  std::string model, text_file, out;
  std::string tokenizer_cache = ".cache/keel/tokenizers";
  bool quiet = false;
  app.add_option("tokenizer", model,
                 "the dataset folder, or a tokenizer file: SentencePiece .model or GPT-2's encoder.json")
      ->required();
  app.add_option("--tokenizer-cache", tokenizer_cache, "where GPT-2's files are for a folder of llm.c shards");
  app.add_option("text", text_file, "plain UTF-8 text file")->required();
  app.add_option("out", out, "token shard to write")->required();
  app.add_flag("--quiet", quiet, "print nothing but errors (for programs that run this one)");
  if (int code = keel::cli::parse_args(app, std::vector<std::string>(argv + 1, argv + argc)); code >= 0) return code;
  if (quiet) spdlog::set_level(spdlog::level::warn);
  return keel::cli::run_guarded("tokenize", [&]() -> int {
    const auto tokenizer = keel::open_tokenizer_at(model, tokenizer_cache);
    const std::vector<int> ids = tokenizer->encode(keel::fs::read_file(text_file));
    std::vector<uint16_t> tokens;
    tokens.reserve(ids.size());
    for (int id : ids) {
      KEEL_CHECK(id >= 0 && id <= std::numeric_limits<uint16_t>::max(), "token id " << id << " does not fit a shard");
      tokens.push_back(static_cast<uint16_t>(id));
    }
    keel::write_token_shard(out, tokens);
    if (!quiet) std::cout << tokens.size() << " tokens\n";
    return 0;
  });
}
