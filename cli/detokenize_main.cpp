// `keel-detokenize TOKENIZER.model IDS.bin OUT.txt`: decodes a token shard (data/token_shard.h)
// back to text with a run's SentencePiece tokenizer. Its own program, like keel-tokenize: the
// SentencePiece library must not share a process with LibTorch's libprotobuf, so `keel generate`
// runs it as a child process.
#include <spdlog/spdlog.h>

#include "cli/cli_util.h"
#include "common/crash_handler.h"
#include "common/fs.h"
#include "data/token_shard.h"
#include "data/text_tokenizer.h"

int main(int argc, char** argv) {
  spdlog::set_pattern("[%H:%M:%S] [%^%l%$] %v");
  keel::install_crash_handler();
  CLI::App app("Decode a token shard to text with a SentencePiece tokenizer", "keel-detokenize");
  std::string model, ids_file, out;
  std::string tokenizer_cache = ".cache/keel/tokenizers";
  app.add_option("tokenizer", model,
                 "the dataset folder, or a tokenizer file: SentencePiece .model or GPT-2's encoder.json")
      ->required();
  app.add_option("--tokenizer-cache", tokenizer_cache, "where GPT-2's files are for a folder of llm.c shards");
  app.add_option("ids", ids_file, "token shard to decode")->required();
  app.add_option("out", out, "text file to write")->required();
  if (int code = keel::cli::parse_args(app, std::vector<std::string>(argv + 1, argv + argc)); code >= 0) return code;
  return keel::cli::run_guarded("detokenize", [&]() -> int {
    const auto tokenizer = keel::open_tokenizer_at(model, tokenizer_cache);
    keel::TokenShard shard(ids_file);
    std::vector<int> ids(shard.tokens(), shard.tokens() + shard.num_tokens());
    const std::string text = tokenizer->decode(ids);
    keel::fs::write_file_atomic(out, text);
    return 0;
  });
}
