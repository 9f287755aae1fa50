// `keel diagnose CHECKPOINT [--text FILE | --data DIR] [--heatmap OUT.png] [--json OUT.json]`
//
// Loads any checkpoint Keel writes (a checkpoint folder, a run's checkpoints/ folder or a run
// directory: the newest checkpoint that verifies; TP shards are re-assembled onto one process),
// rebuilds the model from the checkpoint's own config.yaml, and computes the model diagnostics of
// diagnostics/model_diagnostics.h on
//   --text FILE  the file tokenized with the dataset's tokenizer (SentencePiece or GPT-2's),
//                cut into consecutive windows of the context length, or
//   (default)    the first batch of the dataset's validation shards: the very probe batch training
//                uses, so the numbers match the diag.* values the run logged at that step.
// Prints a per-layer table (attention entropy mean and normalised, overloaded heads, linearity
// with and without the residual, MLP sparsity, sublayer norms) and a layer x head table of
// normalised entropies; --heatmap draws the latter with gnuplot; --json writes the full report.
// A Torch TU (no spdlog/fmt here).
#include <torch/torch.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint_store.h"
#include "cli/checkpoint_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "device/select_device.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/process.h"
#include "data/data_loader.h"
#include "data/token_shard.h"
#include "diagnostics/model_diagnostics.h"
#include "model/gpt.h"
#include "registry/diagnostics_summary.h"
#include "registry/heatmap_plot.h"
#include "registry/run_summary.h"
#include "diagnostics/layer_linearity.h"
#include "worker/run_config.h"
#include "checkpoint_torch/training_checkpoint.h"

namespace keel::cli {
namespace {

namespace stdfs = std::filesystem;

struct Probe {
  torch::Tensor tokens;  // (B, T) int64
  std::string source;
};

// `text_file` encoded by keel-tokenize (a child process: SentencePiece must not share this
// process with libprotobuf), cut into at most `batch` consecutive windows of `seq_len` tokens
// (one shorter window when the text is shorter than seq_len).
Probe text_probe(const std::string& text_file, const std::string& tokenizer, const std::string& tokenizer_cache,
                 int64_t batch, int64_t seq_len, int64_t vocab_size) {
  KEEL_CHECK(stdfs::is_regular_file(text_file), "--text: '" << text_file << "' is not a file");
  KEEL_CHECK(stdfs::exists(tokenizer),
             "the run's tokenizer '" << tokenizer << "' is missing (point --data at the dataset folder or use --tokenizer)");
  ScratchDir scratch("diagnose");
  const std::string shard_path = scratch.path() + "/text.bin";
  const int code = process::run(
      {process::sibling_program("keel-tokenize"), tokenizer, text_file, shard_path, "--tokenizer-cache", tokenizer_cache,
       "--quiet"});  // its token count is not the user's business here; its errors still show
  KEEL_CHECK(code == 0, "keel-tokenize failed (exit " << code << ") on '" << text_file << "'");
  TokenShard shard(shard_path);
  const int64_t n = shard.num_tokens();
  KEEL_CHECK(n >= 2, "--text: '" << text_file << "' gives " << n << " tokens; the diagnostics need at least 2");
  KEEL_CHECK(shard.max_token() < vocab_size, "--text: token id " << shard.max_token() << " is outside the model's vocabulary of "
                                                                 << vocab_size << " (wrong tokenizer?)");
  const int64_t T = std::min(seq_len, n);
  const int64_t B = std::max<int64_t>(1, std::min(batch, n / T));
  auto tokens = torch::empty({B, T}, torch::kLong);
  auto a = tokens.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) a[b][t] = shard.tokens()[b * T + t];
  return {tokens, text_file + " (" + std::to_string(n) + " tokens)"};
}

// The first validation batch: what the trainer uses as its probe batch.
Probe validation_probe(const std::string& data_dir, const std::string& pattern, int64_t batch, int64_t seq_len) {
  DataLoader loader(glob_shards(data_dir, pattern), batch, seq_len);
  auto b = loader.next();
  auto tokens = torch::empty({b.batch_size, b.seq_len}, torch::kLong);
  auto a = tokens.accessor<int64_t, 2>();
  for (int64_t i = 0; i < b.batch_size; ++i)
    for (int64_t t = 0; t < b.seq_len; ++t) a[i][t] = b.inputs[i * b.seq_len + t];
  return {tokens, "first validation batch of " + data_dir + "/" + pattern};
}

int64_t checkpoint_step(const std::string& dir) {
  auto json = nlohmann::json::parse(fs::read_file(dir + "/trainer_state.json"), nullptr, false);
  return json.is_object() && json.contains("step") && json["step"].is_number_integer() ? json["step"].get<int64_t>() : -1;
}

struct DiagnoseArgs {
  std::string checkpoint_path, text_file, data_dir, tokenizer, heatmap_path, json_path, device_name = "cpu";
  std::vector<std::string> overrides;
  int64_t batch = 0, seq_len = 0;
};

void add_diagnose_options(CLI::App& app, DiagnoseArgs& d) {
  app.add_option("checkpoint", d.checkpoint_path, "checkpoint folder, or a run directory (its newest checkpoint)")
      ->required();
  app.add_option("--text", d.text_file, "plain-text file to compute the diagnostics on (default: the val shards)");
  app.add_option("--data", d.data_dir,
                 "dataset folder: its val shards, or its tokenizer with --text (default: the run's data.dir)");
  app.add_option("--tokenizer", d.tokenizer, "tokenizer for --text: a .model or encoder.json file (default: DATA's own)");
  app.add_option("--batch", d.batch, "sequences (default: the run's diagnostics.probe_batch_size)");
  app.add_option("--seq-len", d.seq_len, "tokens per sequence (default: the model's context length)");
  app.add_option("--heatmap", d.heatmap_path, "draw the layer x head normalised entropy into OUT.png");
  app.add_option("--json", d.json_path, "write the full report as JSON");
  app.add_option("--device", d.device_name, "cpu or cuda")->capture_default_str();
  app.add_option("--set", d.overrides,
                 "override a key of the checkpoint's config (e.g. diagnostics.sparsity_threshold=0.01)")
      ->take_all();
}

void print_report(const std::string& dir, int64_t step, const RunConfig& config, const Probe& probe,
                  const registry::DiagnosticsSummary& summary) {
  std::cout << "checkpoint: " << dir << " (step " << step << ", recipe '" << config.run.recipe << "', "
            << config.model.num_layers << " layers x " << config.model.num_heads << " heads, norm "
            << config.model.norm << ", " << config.model.activation << ")\n"
            << "probe: " << probe.tokens.size(0) << " x " << probe.tokens.size(1) << " tokens, " << probe.source
            << "\n\n"
            << "mean attention entropy " << registry::format_number(summary.mean_entropy, 3)
            << " nats, normalised " << registry::format_number(summary.mean_normalised_entropy, 3)
            << "; entropic overload (normalised > " << config.diagnostics.entropy_overload_threshold
            << "): " << registry::format_number(100 * summary.overload_fraction, 1) << "% of heads\n"
            << "mean linearity " << registry::format_number(summary.mean_linearity, 4) << " (without residual "
            << registry::format_number(summary.mean_linearity_without_residual, 4) << "); mean MLP sparsity "
            << registry::format_number(summary.mean_mlp_sparsity, 4) << " (|a| < " << config.diagnostics.sparsity_threshold
            << "), exact zeros " << registry::format_number(summary.mean_mlp_exactly_zero, 4)
            << "; embedding output std " << registry::format_number(summary.embedding_output_std, 4) << "\n";
  const int64_t tokens = probe.tokens.numel();
  if (diagnostics::linearity_fit_is_exact(tokens, config.model.d_model))
    std::cout << "warning: the probe has " << tokens << " tokens, not more than the model width " << config.model.d_model
              << " + 1: the least-squares fit behind linearity is then exact, so every layer reads 1 whatever it "
                 "computes. Give a longer --text (more than "
              << config.model.d_model + 1 << " tokens) or the dataset's probe (--data).\n";
  std::cout << "\n"
            << "per layer:\n"
            << registry::format_layer_table(summary) << "\nnormalised attention entropy per head:\n"
            << registry::format_head_table(summary);
}

void write_json_report(const std::string& json_path, const std::string& dir, int64_t step, const Probe& probe,
                       const DiagnosticsReport& report) {
  nlohmann::json out = report.to_json();
  out["checkpoint"] = dir;
  out["step"] = step;
  out["probe"] = {{"batch", probe.tokens.size(0)}, {"seq_len", probe.tokens.size(1)}, {"source", probe.source}};
  out["flat"] = report.flat_metrics();
  fs::write_file_atomic(json_path, out.dump(2) + "\n");
  std::cout << "\nreport: " << json_path << "\n";
}

void draw_heatmap(const std::string& heatmap_path, const RunConfig& config, int64_t step,
                  const registry::DiagnosticsSummary& summary) {
  const std::string title = (config.run.recipe.empty() ? std::string("model") : config.run.recipe) + " step " +
                            std::to_string(step);
  registry::plot_heatmaps({registry::entropy_panel(summary, title)}, heatmap_path);
  std::cout << "\nentropy heat map: " << heatmap_path << "\n";
}

int run_diagnose(DiagnoseArgs& d) {
  const std::string dir = resolve_checkpoint(d.checkpoint_path, "diagnose");
  KEEL_CHECK(stdfs::exists(dir + "/config.yaml"), "checkpoint '" << dir << "' has no config.yaml");
  RunConfig config = RunConfig::load(dir + "/config.yaml", d.overrides);
  if (config.train.threads > 0) torch::set_num_threads(static_cast<int>(config.train.threads));
  const torch::Device device = select_device(d.device_name);
  if (d.data_dir.empty()) d.data_dir = config.data.dir;
  if (d.batch <= 0) d.batch = config.diagnostics.probe_batch_size;
  if (d.seq_len <= 0) d.seq_len = config.model.context_length;
  KEEL_CHECK(d.seq_len >= 2 && d.seq_len <= config.model.context_length,
             "--seq-len must be in [2, " << config.model.context_length << "]");

  Gpt model(config.model);  // one process: a TP-sharded checkpoint is re-assembled on load
  load_model_weights(dir, model);
  model->to(device);
  const Probe probe = d.text_file.empty()
                          ? validation_probe(d.data_dir, config.data.val_pattern, d.batch, d.seq_len)
                          : text_probe(d.text_file, d.tokenizer.empty() ? d.data_dir : d.tokenizer,
                                       config.data.tokenizer_cache, d.batch, d.seq_len, config.model.vocab_size);
  const DiagnosticsReport report = compute_diagnostics(*model, probe.tokens.to(device), config.diagnostics);

  const int64_t step = checkpoint_step(dir);
  const auto summary = registry::summarize_diagnostics(report.flat_metrics(), step - 1,
                                                       config.diagnostics.entropy_overload_threshold);
  print_report(dir, step, config, probe, summary);
  if (!d.json_path.empty()) write_json_report(d.json_path, dir, step, probe, report);
  if (!d.heatmap_path.empty()) draw_heatmap(d.heatmap_path, config, step, summary);
  return 0;
}

}  // namespace

int diagnose_command(const std::vector<std::string>& args) {
  CLI::App app("Model diagnostics of a checkpoint: attention entropy, linearity, MLP sparsity, norms", "keel diagnose");
  DiagnoseArgs d;
  add_diagnose_options(app, d);
  if (int code = parse_args(app, args); code >= 0) return code;
  return run_guarded("diagnose", [&]() -> int { return run_diagnose(d); });
}

}  // namespace keel::cli
