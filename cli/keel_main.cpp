// `keel`: the user-facing program. Thin: dispatches to cli/*_command.cpp.
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <mutex>

#include <iostream>
#include <map>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/version.h"
#include "common/crash_handler.h"
#include "common/exit_codes.h"
#include "worker/progress.h"

namespace {

// The console log sink: stderr, sharing the terminal with the progress bar, so it first clears a
// bar line that is drawn without a newline (the next progress update redraws it).
class ConsoleSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(message, formatted);
    if (keel::take_open_progress_line()) std::fputs("\r\033[K", stderr);
    std::fwrite(formatted.data(), 1, formatted.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

void print_usage() {
  std::cerr << "usage: keel [--debug] <command> [args]   |   keel --version\n\n"
               "commands:\n"
               "  train CONFIG [--set section.key=value ...] [--run-dir DIR] [--resume]\n"
               "                 train a model (CONFIG: configs/*.yaml)\n"
               "  prepare [CONFIG] [--corpus embedded|large] [--text FILE ...] [--out DIR] [--set ...]\n"
               "                 train the tokenizer and write token shards\n"
               "  runs [--root runs]   list runs (and record them in the SQLite run registry)\n"
               "  compare RUN_DIR... [--plot OUT.png]\n"
               "                 compare runs: table, differing config keys, loss/grad-norm curves\n"
               "  diagnose CHECKPOINT [--text FILE | --data DIR] [--heatmap OUT.png]\n"
               "                 attention entropy, linearity, MLP sparsity of a saved checkpoint\n"
               "  generate CHECKPOINT --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K] [--top-p P]\n"
               "                 sample with a KV cache / linear state; --tda-threshold T for TDA\n"
               "  uptrain --from CHECKPOINT [--steps N] [--set ...]\n"
               "                 linearise the attention (SUPRA) and continue training\n"
               "  export CHECKPOINT --format hf --out DIR\n"
               "                 write a Hugging Face GPT-2 folder (config, safetensors, tokenizer)\n"
               "  import --format hf DIR --out CHECKPOINT\n"
               "                 a Hugging Face GPT-2 folder as a checkpoint for train.init_from\n"
               "  score CHECKPOINT --tokens FILE\n"
               "                 per-token log-probs of token sequences (JSON, fp32 on the CPU)\n\n"
               "Run `keel <command> --help` for a command's options. --debug: errors name the source\n"
               "file and line that raised them, and `keel train` shows its coordinator's output (otherwise\n"
               "in RUN_DIR/coordinator.log).\n";
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("keel", std::make_shared<ConsoleSink>()));
  spdlog::set_pattern("[%H:%M:%S] [%l] %v");
  spdlog::flush_on(spdlog::level::info);  // logs stay complete even if the process dies
  keel::install_crash_handler();
  // --debug anywhere (before or after the command): errors keep their source file and line.
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--debug")
      keel::cli::set_debug(true);
    else
      words.emplace_back(argv[i]);
  }
  if (words.empty() || words[0] == "--help" || words[0] == "-h") {
    print_usage();
    return words.empty() ? keel::kExitConfigError : keel::kExitOk;
  }
  if (words[0] == "--version" || words[0] == "-V") {
    std::cout << keel::cli::version_text();
    return keel::kExitOk;
  }
  const std::string command = words[0];
  std::vector<std::string> args(words.begin() + 1, words.end());
  const std::map<std::string, int (*)(const std::vector<std::string>&)> commands = {
      {"train", keel::cli::train_command},
      {"prepare", keel::cli::forward_to_prepare},
      {"runs", keel::cli::runs_command},
      {"compare", keel::cli::compare_command},
      {"diagnose", keel::cli::diagnose_command},
      {"generate", keel::cli::generate_command},
      {"uptrain", keel::cli::uptrain_command},
      {"export", keel::cli::export_command},
      {"import", keel::cli::import_command},
      {"score", keel::cli::score_command},
  };
  auto it = commands.find(command);
  if (it == commands.end()) {
    std::cerr << "keel: unknown command '" << command << "'\n\n";
    print_usage();
    return keel::kExitConfigError;
  }
  return it->second(args);
}
