// `keel generate CHECKPOINT (--prompt TEXT | --prompt-file FILE | --prompt-from-val N) [options]`
//
// Samples from any checkpoint Keel writes (a checkpoint folder or a run directory: its newest
// checkpoint that verifies; TP shards are re-assembled onto one process), rebuilt from the
// checkpoint's own config.yaml: softmax models decode with a KV cache, linear-attention (SUPRA)
// models with a fixed-size state (generation/generator.h). Greedy or temperature / top-k / top-p
// sampling with a seed; --tda-threshold / --tda-sparsity decode with TDA's sliced MLPs
// (generation/tda.h). Prints the text and prefill time, decode tokens/s and the cache's memory.
// --tda-sweep T1,T2,...: the TDA report (per threshold: sparsity, decode tokens/s, agreement with
// the dense greedy output, dense-model loss on the generated text, val loss under the mask), which
// generation/tda_sweep.h measures; this file parses, loads, calls and prints.
// Text goes through keel-tokenize / keel-detokenize child processes (SentencePiece must not share
// this process with LibTorch's libprotobuf). A Torch TU (no spdlog/fmt here).
#include <torch/torch.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/checkpoint_store.h"
#include "cli/checkpoint_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/process.h"
#include "data/data_loader.h"
#include "data/dataset_meta.h"
#include "data/token_shard.h"
#include "data/token_statistics.h"
#include "generation/generator.h"
#include "generation/tda_sweep.h"
#include "model/gpt.h"
#include "device/device_memory.h"
#include "device/select_device.h"
#include "worker/run_config.h"
#include "checkpoint_torch/training_checkpoint.h"

namespace keel::cli {
namespace {

namespace stdfs = std::filesystem;

// Whether `tokenizer` (a dataset folder or a tokenizer file) can be opened: its files exist.
bool tokenizer_available(const std::string& tokenizer, const std::string& tokenizer_cache) {
  std::error_code ec;
  if (stdfs::is_regular_file(tokenizer, ec)) return true;
  if (!stdfs::is_directory(tokenizer, ec)) return false;
  try {
    dataset_tokenizer(tokenizer, tokenizer_cache);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

std::vector<int64_t> encode(const std::string& tokenizer, const std::string& tokenizer_cache, const std::string& text) {
  KEEL_CHECK(tokenizer_available(tokenizer, tokenizer_cache),
             "no tokenizer at '" << tokenizer << "' (a dataset folder, a SentencePiece .model or GPT-2's encoder.json; "
                                    "use --tokenizer)");
  ScratchDir scratch("generate");
  fs::write_file_atomic(scratch.path() + "/prompt.txt", text);
  const int code = process::run({process::sibling_program("keel-tokenize"), tokenizer, scratch.path() + "/prompt.txt",
                                 scratch.path() + "/prompt.bin", "--tokenizer-cache", tokenizer_cache,
                                 "--quiet"});  // the prompt's length is in the report; its errors still show
  KEEL_CHECK(code == 0, "keel-tokenize failed (exit " << code << ")");
  TokenShard shard(scratch.path() + "/prompt.bin");
  return std::vector<int64_t>(shard.tokens(), shard.tokens() + shard.num_tokens());
}

std::string decode(const std::string& tokenizer, const std::string& tokenizer_cache, const std::vector<int64_t>& ids) {
  ScratchDir scratch("generate");
  std::vector<uint16_t> tokens(ids.begin(), ids.end());
  write_token_shard(scratch.path() + "/ids.bin", tokens);
  const int code = process::run({process::sibling_program("keel-detokenize"), tokenizer, scratch.path() + "/ids.bin",
                                 scratch.path() + "/text.txt", "--tokenizer-cache", tokenizer_cache});
  KEEL_CHECK(code == 0, "keel-detokenize failed (exit " << code << ")");
  return fs::read_file(scratch.path() + "/text.txt");
}

// `count` windows of `length` consecutive validation tokens.
std::vector<std::vector<int64_t>> validation_windows(const RunConfig& config, int64_t count, int64_t length) {
  DataLoader loader(glob_shards(config.data.dir, config.data.val_pattern), 1, length - 1);
  std::vector<std::vector<int64_t>> out;
  for (int64_t i = 0; i < count; ++i) {
    auto batch = loader.next();
    std::vector<int64_t> window(batch.inputs.begin(), batch.inputs.end());
    window.push_back(batch.targets.back());
    out.push_back(std::move(window));
  }
  return out;
}

int64_t peak_memory_bytes(const torch::Device& device) {
  if (device.is_cuda()) return cuda_peak_allocated_bytes(device.index());
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux: KiB
}

std::string fixed(double value, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return out.str();
}

std::vector<double> parse_list(const std::string& text) {
  std::vector<double> values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      values.push_back(std::stod(item));
    } catch (const std::exception&) {
      throw ConfigError("--tda-sweep: '" + item + "' is not a number");
    }
  }
  return values;
}


struct GenerateArgs {
  std::string checkpoint_path, prompt, prompt_file, tokenizer, device_name = "auto", precision = "auto", json_path,
      tda_sweep;
  int64_t prompt_from_val = 0, max_tokens = 128, top_k = 0, threads = 0, eval_sequences = 8;
  double temperature = 1.0, top_p = 1.0, tda_threshold = -1, tda_sparsity = -1;
  uint64_t seed = 1337;
  bool greedy = false, ignore_eos = false;
  std::vector<double> sweep_thresholds;  // --tda-sweep parsed
};

void add_generate_options(CLI::App& app, GenerateArgs& g) {
  app.add_option("checkpoint", g.checkpoint_path, "checkpoint folder, or a run directory (its newest checkpoint)")
      ->required();
  app.add_option("--prompt", g.prompt, "prompt text");
  app.add_option("--prompt-file", g.prompt_file, "file holding the prompt text");
  app.add_option("--prompt-from-val", g.prompt_from_val, "use the first N tokens of the validation data as the prompt");
  app.add_option("--max-tokens", g.max_tokens, "tokens to generate (capped by model.context_length)")
      ->capture_default_str();
  app.add_flag("--greedy", g.greedy, "argmax decoding (same as --temperature 0)");
  app.add_option("--temperature", g.temperature, "sampling temperature")->capture_default_str();
  app.add_option("--top-k", g.top_k, "sample among the k most likely tokens; 0 = all")->capture_default_str();
  app.add_option("--top-p", g.top_p, "nucleus sampling: the smallest set reaching probability p")->capture_default_str();
  app.add_option("--seed", g.seed, "sampling seed")->capture_default_str();
  app.add_flag("--ignore-eos", g.ignore_eos, "keep generating after the end-of-text token (benchmarks)");
  app.add_option("--tda-threshold", g.tda_threshold, "TDA: keep neurons whose prompt score >= T x the layer's mean");
  app.add_option("--tda-sparsity", g.tda_sparsity, "TDA: drop this fraction of each layer's neurons (lowest scores)");
  app.add_option("--tda-sweep", g.tda_sweep, "TDA report for thresholds T1,T2,... (greedy, against dense)");
  app.add_option("--eval-sequences", g.eval_sequences, "--tda-sweep: validation windows for the masked val loss")
      ->capture_default_str();
  app.add_option("--tokenizer", g.tokenizer, "dataset folder or tokenizer file (.model, encoder.json) (default: the run's data.dir)");
  app.add_option("--device", g.device_name, "auto | cpu | cuda")->capture_default_str();
  app.add_option("--precision", g.precision, "auto (bf16 autocast on CUDA) | fp32 | bf16")->capture_default_str();
  app.add_option("--threads", g.threads, "CPU threads; 0 = LibTorch's default");
  app.add_option("--json", g.json_path, "write the report as JSON");
}

// The rules CLI11 cannot express; parses the --tda-sweep list.
void check_generate_args(GenerateArgs& g) {
  const int sources = !g.prompt.empty() + !g.prompt_file.empty() + (g.prompt_from_val > 0);
  if (sources != 1) throw ConfigError("give exactly one of --prompt, --prompt-file, --prompt-from-val");
  if (g.tda_threshold >= 0 && g.tda_sparsity >= 0) throw ConfigError("give --tda-threshold or --tda-sparsity, not both");
  if (!g.tda_sweep.empty()) g.sweep_thresholds = parse_list(g.tda_sweep);
}

// What the checkpoint and the device settings give: the model (eval mode, on its device) and its config.
struct LoadedModel {
  std::string dir;
  RunConfig config;
  torch::Device device = torch::kCPU;
  bool bf16 = false;
  Gpt model{nullptr};
};

LoadedModel load_model(const GenerateArgs& g) {
  LoadedModel m;
  m.dir = resolve_checkpoint(g.checkpoint_path, "generate");
  std::string config_path = m.dir + "/config.yaml";
  if (!stdfs::exists(config_path)) config_path = stdfs::path(m.dir).parent_path().parent_path().string() + "/config.yaml";
  m.config = RunConfig::load(config_path, {});
  if (g.threads > 0) torch::set_num_threads(static_cast<int>(g.threads));
  m.device = select_device(g.device_name);
  KEEL_CHECK(m.device.is_cuda() || g.precision != "bf16", "--precision bf16 needs a CUDA device");
  m.bf16 = m.device.is_cuda() && g.precision != "fp32";
  m.model = Gpt(m.config.model);  // one process: a TP-sharded checkpoint is re-assembled on load
  load_model_weights(m.dir, m.model);
  m.model->to(m.device);
  m.model->eval();
  return m;
}

std::vector<int64_t> prompt_tokens(const GenerateArgs& g, const LoadedModel& m) {
  std::vector<int64_t> prompt_ids;
  if (g.prompt_from_val > 0) {
    prompt_ids = validation_windows(m.config, 1, g.prompt_from_val + 1)[0];
    prompt_ids.pop_back();
  } else {
    prompt_ids = encode(g.tokenizer, m.config.data.tokenizer_cache, g.prompt_file.empty() ? g.prompt : fs::read_file(g.prompt_file));
  }
  KEEL_CHECK(!prompt_ids.empty(), "the prompt encodes to no tokens");
  return prompt_ids;
}

GenerationOptions generation_options(const GenerateArgs& g, const LoadedModel& m) {
  GenerationOptions options;
  options.max_new_tokens = g.max_tokens;
  options.sampler.greedy = g.greedy;
  options.sampler.temperature = g.temperature;
  options.sampler.top_k = g.top_k;
  options.sampler.top_p = g.top_p;
  options.sampler.seed = g.seed;
  options.bf16_autocast = m.bf16;
  if (!g.ignore_eos) options.eos_id = dataset_eos_id(m.config.data.dir);
  options.tda.threshold = g.tda_threshold;
  options.tda.sparsity = g.tda_sparsity;
  return options;
}

// The TDA sweep's table: a header once the dense reference is measured, then a line per row.
void print_tda_row(const LoadedModel& m, const TdaSweepInput& input, const TdaSweepRow& row) {
  if (!row.threshold) {
    std::cout << "TDA on " << m.dir << " (" << m.config.model.attention << " attention, " << m.device.str() << "): "
              << input.prompt.size() << "-token prompt, " << row.result.tokens.size()
              << " greedy tokens; val loss over " << input.validation_windows.size() << " windows of "
              << m.config.model.context_length << " tokens, mask from the first " << input.mask_prompt_length
              << "\n";
    std::cout << "threshold  sparsity  decode tok/s  agreement  first diff  dense loss on text  val loss (mask)\n";
  }
  std::cout << std::setw(9) << (row.threshold ? fixed(*row.threshold, 2) : "dense") << "  " << std::setw(8)
            << fixed(row.sparsity, 3) << "  " << std::setw(12) << fixed(row.result.decode_tokens_per_second(), 1)
            << "  " << std::setw(9) << fixed(row.agreement, 3) << "  " << std::setw(10) << row.first_divergence
            << "  " << std::setw(18) << fixed(row.dense_loss_on_text, 4) << "  " << std::setw(15)
            << fixed(row.val_loss_masked, 4) << "\n";
}

// keel generate --tda-sweep: the report's "tda" rows.
nlohmann::json tda_sweep(const GenerateArgs& g, LoadedModel& m, const std::vector<int64_t>& prompt_ids,
                         const GenerationOptions& options) {
  TdaSweepInput input;
  input.prompt = prompt_ids;
  input.generation = options;
  input.thresholds = g.sweep_thresholds;
  input.validation_windows = validation_windows(m.config, g.eval_sequences, m.config.model.context_length);
  input.mask_prompt_length = m.config.model.context_length / 2;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : run_tda_sweep(m.model, input, [&](const TdaSweepRow& r) { print_tda_row(m, input, r); }))
    rows.push_back(row.to_json());
  return rows;
}

// One generation: the text (or token ids without a tokenizer) on stdout, the timings on stderr.
void generate_and_print(const GenerateArgs& g, LoadedModel& m, const std::vector<int64_t>& prompt_ids,
                        const GenerationOptions& options, nlohmann::json& report) {
  const bool cuda = m.device.is_cuda();
  if (cuda) cuda_reset_peak_memory(m.device.index());
  const auto result = generate(m.model, prompt_ids, options);
  report.update(generation_figures(result));
  report["peak_memory_bytes"] = peak_memory_bytes(m.device);
  report["peak_memory_kind"] = cuda ? "cuda_peak_allocated" : "process_max_rss";
  report["tokens"] = result.tokens;
  if (tokenizer_available(g.tokenizer, m.config.data.tokenizer_cache)) {
    std::vector<int64_t> all = prompt_ids;
    all.insert(all.end(), result.tokens.begin(), result.tokens.end());
    const std::string text = decode(g.tokenizer, m.config.data.tokenizer_cache, all);
    report["text"] = text;
    std::cout << text << "\n";
  } else {
    std::cout << "(no tokenizer at " << g.tokenizer << "; token ids)";
    for (auto id : result.tokens) std::cout << " " << id;
    std::cout << "\n";
  }
  std::cerr << "\nkeel generate: " << m.config.model.attention << " attention on " << m.device.str()
            << (m.bf16 ? " (bf16)" : "") << ": prefill " << prompt_ids.size() << " tokens in "
            << fixed(result.prefill_seconds * 1000, 1) << " ms; " << result.tokens.size() << " new tokens, decode "
            << fixed(result.decode_tokens_per_second(), 1) << " tokens/s; "
            << (m.config.model.attention == "linear" ? "linear state " : "KV cache ")
            << fixed(result.cache_bytes / 1048576.0, 2) << " MiB";
  if (result.tda_sparsity > 0) std::cerr << "; TDA sparsity " << fixed(result.tda_sparsity, 3);
  std::cerr << "\n";
}

int run_generate(GenerateArgs& g) {
  check_generate_args(g);
  LoadedModel m = load_model(g);
  if (g.tokenizer.empty()) g.tokenizer = m.config.data.dir;  // the dataset's own tokenizer, whichever it is
  const std::vector<int64_t> prompt_ids = prompt_tokens(g, m);
  const GenerationOptions options = generation_options(g, m);
  if (m.device.is_cuda()) {
    // Warm-up (CUDA context, cuBLAS handles, allocator): otherwise the first timed run pays it.
    GenerationOptions warm_up = options;
    warm_up.max_new_tokens = 4;
    warm_up.tda = TdaOptions{};
    generate(m.model, prompt_ids, warm_up);
  }
  nlohmann::json report = {{"checkpoint", m.dir},
                           {"attention", m.config.model.attention},
                           {"device", m.device.str()},
                           {"precision", m.bf16 ? "bf16" : "fp32"},
                           {"threads", torch::get_num_threads()},
                           {"prompt_tokens", prompt_ids.size()},
                           {"parameters", m.model->num_parameters()}};
  if (!g.tda_sweep.empty())
    report["tda"] = tda_sweep(g, m, prompt_ids, options);
  else
    generate_and_print(g, m, prompt_ids, options, report);
  if (!g.json_path.empty()) fs::write_file_atomic(g.json_path, report.dump(2) + "\n");
  return 0;
}

}  // namespace

int generate_command(const std::vector<std::string>& args) {
  CLI::App app("Sample from a checkpoint with a KV cache (or a linear-attention state), optionally with TDA",
               "keel generate");
  GenerateArgs g;
  add_generate_options(app, g);
  if (int code = parse_args(app, args); code >= 0) return code;
  return run_guarded("generate", [&]() -> int { return run_generate(g); });
}

}  // namespace keel::cli
