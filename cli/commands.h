// Subcommands of the `keel` program. Each takes its argv (after the subcommand name) and returns the
// process exit code; the main only dispatches. Torch-free headers.
#pragma once

#include <string>
#include <vector>

namespace keel::cli {

int train_command(const std::vector<std::string>& args);
int runs_command(const std::vector<std::string>& args);     // keel runs: list runs, fill the registry
int compare_command(const std::vector<std::string>& args);  // keel compare: table + curves
int diagnose_command(const std::vector<std::string>& args);  // keel diagnose: diagnostics of a checkpoint
int generate_command(const std::vector<std::string>& args);  // keel generate: sampling (KV cache, TDA)
int uptrain_command(const std::vector<std::string>& args);   // keel uptrain: linearise (SUPRA) + train
int export_command(const std::vector<std::string>& args);    // keel export --format hf: a Hugging Face folder
int import_command(const std::vector<std::string>& args);    // keel import --format hf: HF GPT-2 -> checkpoint
int score_command(const std::vector<std::string>& args);     // keel score: per-token log-probs (JSON)
// Implemented in the separate `keel-prepare` program (SentencePiece must not share a process with
// libprotobuf, see data/dataset_meta.h); `keel prepare` forwards to it.
int prepare_command(const std::vector<std::string>& args);
int forward_to_prepare(const std::vector<std::string>& args);

}  // namespace keel::cli
