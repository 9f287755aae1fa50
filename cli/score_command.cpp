// `keel score CHECKPOINT --tokens FILE [--vocab N] [--logits OUT.safetensors] [--json OUT] [--threads N]`
//
// Prints, as one JSON document on stdout, the log-probability the checkpoint gives each next token
// (interop/token_scores.h; fp32 on the CPU):
//   {"checkpoint": DIR, "vocab": V, "sequences": [{"tokens": [t0, ...], "logprobs": [lp1, ...],
//     "sum_logprob": S, "mean_nll": -S/(n-1)}, ...]}
// where logprobs[i] = log p(t_{i+1} | t_0..t_i). FILE holds token ids, either
//   JSON:  [t0, t1, ...] (one sequence) or [[...], [...]] (several), or
//   text:  whitespace-separated ids, one sequence per non-empty line.
// --vocab N normalises over the first N logits only (as an HF export with vocab_size N does).
// This file parses, calls and prints; Torch-free.
#include <filesystem>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/checkpoint_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/check.h"
#include "common/config.h"
#include "common/fs.h"
#include "interop/token_scores.h"
#include "worker/run_config.h"

namespace keel::cli {
namespace {

namespace stdfs = std::filesystem;

std::vector<int64_t> json_sequence(const nlohmann::json& array, const std::string& where) {
  std::vector<int64_t> out;
  for (const auto& v : array) {
    if (!v.is_number_integer()) throw ConfigError(where + ": token ids must be integers, got " + v.dump());
    out.push_back(v.get<int64_t>());
  }
  return out;
}

// The sequences of a --tokens file (formats in the header comment).
std::vector<std::vector<int64_t>> read_token_file(const std::string& path) {
  if (!stdfs::is_regular_file(path)) throw ConfigError("--tokens '" + path + "' is not a file");
  const std::string text = fs::read_file(path);
  const size_t first = text.find_first_not_of(" \t\r\n");
  std::vector<std::vector<int64_t>> sequences;
  if (first != std::string::npos && text[first] == '[') {
    const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.is_array()) throw ConfigError(path + ": not a JSON array of token ids");
    if (!json.empty() && json[0].is_array()) {
      for (size_t i = 0; i < json.size(); ++i) {
        if (!json[i].is_array()) throw ConfigError(path + ": element " + std::to_string(i) + " is not an array");
        sequences.push_back(json_sequence(json[i], path + " sequence " + std::to_string(i)));
      }
    } else {
      sequences.push_back(json_sequence(json, path));
    }
    return sequences;
  }
  std::istringstream lines(text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    std::istringstream words(line);
    std::vector<int64_t> seq;
    std::string word;
    while (words >> word) {
      size_t used = 0;
      int64_t id = 0;
      try {
        id = std::stoll(word, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != word.size())
        throw ConfigError(path + ":" + std::to_string(number) + ": '" + word + "' is not a token id");
      seq.push_back(id);
    }
    if (!seq.empty()) sequences.push_back(std::move(seq));
  }
  return sequences;
}

struct ScoreArgs {
  std::string checkpoint, tokens, logits, json_out;
  int64_t vocab = 0;
  int threads = 0;
};

int run_score(const ScoreArgs& a) {
  const auto sequences = read_token_file(a.tokens);
  const std::string dir = stdfs::absolute(resolve_checkpoint(a.checkpoint, "score")).lexically_normal().string();
  std::string config_path = dir + "/config.yaml";
  if (!stdfs::exists(config_path))  // a TP shard writer's folder: the run's own config
    config_path = stdfs::path(dir).parent_path().parent_path().string() + "/config.yaml";
  KEEL_CHECK(stdfs::exists(config_path), "no config.yaml in '" << dir << "' or its run directory");
  const RunConfig config = RunConfig::load(config_path, {});

  interop::ScoreOptions options;
  options.vocab_limit = a.vocab;
  options.logits_path = a.logits;
  options.threads = a.threads;
  const auto scores = interop::score_sequences(dir, config.model, sequences, options);

  nlohmann::json report = {{"checkpoint", dir},
                           {"vocab", a.vocab > 0 ? a.vocab : config.model.vocab_size},
                           {"precision", "fp32"},
                           {"device", "cpu"},
                           {"sequences", nlohmann::json::array()}};
  for (const auto& s : scores) {
    double sum = 0;
    for (double lp : s.logprobs) sum += lp;
    report["sequences"].push_back({{"tokens", s.tokens},
                                   {"logprobs", s.logprobs},
                                   {"sum_logprob", sum},
                                   {"mean_nll", -sum / static_cast<double>(s.logprobs.size())}});
  }
  const std::string text = report.dump() + "\n";
  if (!a.json_out.empty()) fs::write_file_atomic(a.json_out, text);
  std::cout << text;
  return 0;
}

}  // namespace

int score_command(const std::vector<std::string>& args) {
  CLI::App app("Per-token log-probabilities of token sequences under a checkpoint (fp32, CPU), as JSON",
               "keel score");
  ScoreArgs a;
  app.add_option("checkpoint", a.checkpoint, "checkpoint folder, or a run directory (its newest checkpoint)")
      ->required();
  app.add_option("--tokens", a.tokens,
                 "token ids: a JSON array (or array of arrays), or whitespace-separated ids, one sequence per line")
      ->required();
  app.add_option("--vocab", a.vocab, "normalise over the first N logits only (an HF export's vocab_size)");
  app.add_option("--logits", a.logits, "also write the logits as safetensors (logits.<i>: (n_i, V) fp32)");
  app.add_option("--json", a.json_out, "also write the JSON document to this file");
  app.add_option("--threads", a.threads, "CPU threads; 0 = LibTorch's default");
  if (int code = parse_args(app, args); code >= 0) return code;
  return run_guarded("score", [&]() -> int { return run_score(a); });
}

}  // namespace keel::cli
