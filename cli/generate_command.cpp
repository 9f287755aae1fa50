// `keel generate CHECKPOINT (--prompt TEXT | --prompt-file FILE | --prompt-from-val N) [options]`
//
// Samples from any checkpoint Keel writes (a checkpoint folder or a run directory: its newest
// checkpoint that verifies; TP shards are re-assembled onto one process), rebuilt from the
// checkpoint's own config.yaml: softmax models decode with a KV cache, linear-attention (SUPRA)
// models with a fixed-size state (generation/generator.h). Greedy or temperature / top-k / top-p
// sampling with a seed; --tda-threshold / --tda-sparsity decode with TDA's sliced MLPs
// (generation/tda.h). Prints the text and prefill time, decode tokens/s and the cache's memory.
// --tda-sweep T1,T2,...: the TDA report (per threshold: sparsity, decode tokens/s, agreement with
// the dense greedy output, dense-model loss on the generated text, val loss under the mask).
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
#include "generation/generator.h"
#include "model/gpt.h"
#include "device/device_memory.h"
#include "device/select_device.h"
#include "worker/run_config.h"
#include "checkpoint_torch/training_checkpoint.h"

namespace keel::cli {
namespace {

namespace stdfs = std::filesystem;

std::vector<int64_t> encode(const std::string& tokenizer, const std::string& text) {
  KEEL_CHECK(stdfs::is_regular_file(tokenizer), "the tokenizer '" << tokenizer << "' is missing (use --tokenizer)");
  ScratchDir scratch("generate");
  fs::write_file_atomic(scratch.path() + "/prompt.txt", text);
  const int code = process::run({process::sibling_program("keel-tokenize"), tokenizer, scratch.path() + "/prompt.txt",
                                 scratch.path() + "/prompt.bin"});
  KEEL_CHECK(code == 0, "keel-tokenize failed (exit " << code << ")");
  TokenShard shard(scratch.path() + "/prompt.bin");
  return std::vector<int64_t>(shard.tokens(), shard.tokens() + shard.num_tokens());
}

std::string decode(const std::string& tokenizer, const std::vector<int64_t>& ids) {
  ScratchDir scratch("generate");
  std::vector<uint16_t> tokens(ids.begin(), ids.end());
  write_token_shard(scratch.path() + "/ids.bin", tokens);
  const int code = process::run({process::sibling_program("keel-detokenize"), tokenizer, scratch.path() + "/ids.bin",
                                 scratch.path() + "/text.txt"});
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

}  // namespace

int generate_command(const std::vector<std::string>& args) {
  CLI::App app("Sample from a checkpoint with a KV cache (or a linear-attention state), optionally with TDA",
               "keel generate");
  std::string checkpoint_path, prompt, prompt_file, tokenizer, device_name = "auto", precision = "auto", json_path,
                                                                  tda_sweep;
  int64_t prompt_from_val = 0, max_tokens = 128, top_k = 0, threads = 0, eval_sequences = 8;
  double temperature = 1.0, top_p = 1.0, tda_threshold = -1, tda_sparsity = -1;
  uint64_t seed = 1337;
  bool greedy = false, ignore_eos = false;
  app.add_option("checkpoint", checkpoint_path, "checkpoint folder, or a run directory (its newest checkpoint)")
      ->required();
  app.add_option("--prompt", prompt, "prompt text");
  app.add_option("--prompt-file", prompt_file, "file holding the prompt text");
  app.add_option("--prompt-from-val", prompt_from_val, "use the first N tokens of the validation data as the prompt");
  app.add_option("--max-tokens", max_tokens, "tokens to generate (capped by model.context_length)")->capture_default_str();
  app.add_flag("--greedy", greedy, "argmax decoding (same as --temperature 0)");
  app.add_option("--temperature", temperature, "sampling temperature")->capture_default_str();
  app.add_option("--top-k", top_k, "sample among the k most likely tokens; 0 = all")->capture_default_str();
  app.add_option("--top-p", top_p, "nucleus sampling: the smallest set reaching probability p")->capture_default_str();
  app.add_option("--seed", seed, "sampling seed")->capture_default_str();
  app.add_flag("--ignore-eos", ignore_eos, "keep generating after the end-of-text token (benchmarks)");
  app.add_option("--tda-threshold", tda_threshold, "TDA: keep neurons whose prompt score >= T x the layer's mean");
  app.add_option("--tda-sparsity", tda_sparsity, "TDA: drop this fraction of each layer's neurons (lowest scores)");
  app.add_option("--tda-sweep", tda_sweep, "TDA report for thresholds T1,T2,... (greedy, against dense)");
  app.add_option("--eval-sequences", eval_sequences, "--tda-sweep: validation windows for the masked val loss")
      ->capture_default_str();
  app.add_option("--tokenizer", tokenizer, "SentencePiece model (default: DATA_DIR/tokenizer.model of the run)");
  app.add_option("--device", device_name, "auto | cpu | cuda")->capture_default_str();
  app.add_option("--precision", precision, "auto (bf16 autocast on CUDA) | fp32 | bf16")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads; 0 = LibTorch's default");
  app.add_option("--json", json_path, "write the report as JSON");
  if (int code = parse_args(app, args); code >= 0) return code;

  return run_guarded("generate", [&]() -> int {
    const int sources = !prompt.empty() + !prompt_file.empty() + (prompt_from_val > 0);
    if (sources != 1) throw ConfigError("give exactly one of --prompt, --prompt-file, --prompt-from-val");
    if (tda_threshold >= 0 && tda_sparsity >= 0) throw ConfigError("give --tda-threshold or --tda-sparsity, not both");
    const std::string dir = resolve_checkpoint(checkpoint_path, "generate");
    std::string config_path = dir + "/config.yaml";
    if (!stdfs::exists(config_path)) config_path = stdfs::path(dir).parent_path().parent_path().string() + "/config.yaml";
    RunConfig config = RunConfig::load(config_path, {});
    if (tokenizer.empty()) tokenizer = dataset_file(config.data.dir, "tokenizer.model");
    if (threads > 0) torch::set_num_threads(static_cast<int>(threads));

    const torch::Device device = select_device(device_name);
    const bool cuda = device.is_cuda();
    KEEL_CHECK(cuda || precision != "bf16", "--precision bf16 needs a CUDA device");
    const bool bf16 = cuda && precision != "fp32";

    Gpt model(config.model);  // one process: a TP-sharded checkpoint is re-assembled on load
    load_model_weights(dir, model);
    model->to(device);
    model->eval();

    std::vector<int64_t> prompt_ids;
    if (prompt_from_val > 0) {
      prompt_ids = validation_windows(config, 1, prompt_from_val + 1)[0];
      prompt_ids.pop_back();
    } else {
      prompt_ids = encode(tokenizer, prompt_file.empty() ? prompt : fs::read_file(prompt_file));
    }
    KEEL_CHECK(!prompt_ids.empty(), "the prompt encodes to no tokens");

    GenerationOptions options;
    options.max_new_tokens = max_tokens;
    options.sampler.greedy = greedy;
    options.sampler.temperature = temperature;
    options.sampler.top_k = top_k;
    options.sampler.top_p = top_p;
    options.sampler.seed = seed;
    options.bf16_autocast = bf16;
    if (!ignore_eos && stdfs::exists(dataset_file(config.data.dir, kDatasetMetaFile)))
      options.eos_id = read_dataset_meta(config.data.dir).value("eos_id", -1);
    options.tda.threshold = tda_threshold;
    options.tda.sparsity = tda_sparsity;

    if (cuda) {
      // Warm-up (CUDA context, cuBLAS handles, allocator): otherwise the first timed run pays it.
      GenerationOptions warm_up = options;
      warm_up.max_new_tokens = 4;
      warm_up.tda = TdaOptions{};
      generate(model, prompt_ids, warm_up);
    }

    nlohmann::json report = {{"checkpoint", dir},
                             {"attention", config.model.attention},
                             {"device", device.str()},
                             {"precision", bf16 ? "bf16" : "fp32"},
                             {"threads", torch::get_num_threads()},
                             {"prompt_tokens", prompt_ids.size()},
                             {"parameters", model->num_parameters()}};
    auto describe = [&](const GenerationResult& r) {
      return nlohmann::json{{"new_tokens", r.tokens.size()},
                            {"prefill_seconds", r.prefill_seconds},
                            {"decode_steps", r.decode_steps},
                            {"decode_seconds", r.decode_seconds},
                            {"decode_tokens_per_second", r.decode_tokens_per_second()},
                            {"cache_bytes", r.cache_bytes},
                            {"tda_sparsity", r.tda_sparsity}};
    };

    if (!tda_sweep.empty()) {
      // Greedy decoding: dense, then each threshold, against the dense tokens.
      options.sampler.greedy = true;
      options.tda = TdaOptions{};
      const auto dense = generate(model, prompt_ids, options);
      std::vector<int64_t> dense_text = prompt_ids;
      dense_text.insert(dense_text.end(), dense.tokens.begin(), dense.tokens.end());
      const double dense_text_loss = continuation_loss(model, dense_text, static_cast<int64_t>(prompt_ids.size()), bf16);
      const int64_t window = config.model.context_length, prompt_len = window / 2;
      const auto windows = validation_windows(config, eval_sequences, window);
      auto masked_val_loss = [&](const TdaOptions& tda) {
        double sum = 0;
        for (const auto& w : windows) sum += prompted_loss(model, w, prompt_len, tda, bf16).first;
        return sum / static_cast<double>(windows.size());
      };
      const double dense_val = masked_val_loss(TdaOptions{});
      nlohmann::json rows = nlohmann::json::array();
      std::cout << "TDA on " << dir << " (" << config.model.attention << " attention, " << device.str() << "): "
                << prompt_ids.size() << "-token prompt, " << dense.tokens.size() << " greedy tokens; val loss over "
                << windows.size() << " windows of " << window << " tokens, mask from the first " << prompt_len << "\n";
      std::cout << "threshold  sparsity  decode tok/s  agreement  first diff  dense loss on text  val loss (mask)\n";
      auto print_row = [&](const std::string& name, const nlohmann::json& row) {
        std::cout << std::setw(9) << name << "  " << std::setw(8) << fixed(row["sparsity"].get<double>(), 3) << "  "
                  << std::setw(12) << fixed(row["decode_tokens_per_second"].get<double>(), 1) << "  " << std::setw(9)
                  << fixed(row["agreement"].get<double>(), 3) << "  " << std::setw(10)
                  << row["first_divergence"].get<int64_t>() << "  " << std::setw(18)
                  << fixed(row["dense_loss_on_text"].get<double>(), 4) << "  " << std::setw(15)
                  << fixed(row["val_loss_masked"].get<double>(), 4) << "\n";
      };
      nlohmann::json dense_row = describe(dense);
      dense_row.update({{"threshold", nullptr}, {"sparsity", 0.0}, {"agreement", 1.0},
                        {"first_divergence", static_cast<int64_t>(dense.tokens.size())},
                        {"dense_loss_on_text", dense_text_loss}, {"val_loss_masked", dense_val}});
      print_row("dense", dense_row);
      rows.push_back(dense_row);
      for (double threshold : parse_list(tda_sweep)) {
        options.tda = TdaOptions{};
        options.tda.threshold = threshold;
        const auto r = generate(model, prompt_ids, options);
        const size_t n = std::min(r.tokens.size(), dense.tokens.size());
        size_t same = 0, first_diff = n;
        for (size_t i = 0; i < n; ++i) {
          if (r.tokens[i] == dense.tokens[i]) ++same;
          else if (first_diff == n) first_diff = i;
        }
        std::vector<int64_t> text = prompt_ids;
        text.insert(text.end(), r.tokens.begin(), r.tokens.end());
        nlohmann::json row = describe(r);
        row.update({{"threshold", threshold},
                    {"sparsity", r.tda_sparsity},
                    {"layer_sparsity", r.tda_layer_sparsity},
                    {"agreement", n > 0 ? static_cast<double>(same) / static_cast<double>(dense.tokens.size()) : 0.0},
                    {"first_divergence", static_cast<int64_t>(first_diff)},
                    {"dense_loss_on_text", continuation_loss(model, text, static_cast<int64_t>(prompt_ids.size()), bf16)},
                    {"val_loss_masked", masked_val_loss(options.tda)}});
        print_row(fixed(threshold, 2), row);
        rows.push_back(row);
      }
      report["tda"] = rows;
    } else {
      if (cuda) cuda_reset_peak_memory(device.index());
      const auto result = generate(model, prompt_ids, options);
      report.update(describe(result));
      report["peak_memory_bytes"] = peak_memory_bytes(device);
      report["peak_memory_kind"] = cuda ? "cuda_peak_allocated" : "process_max_rss";
      report["tokens"] = result.tokens;
      std::string text;
      if (stdfs::is_regular_file(tokenizer)) {
        std::vector<int64_t> all = prompt_ids;
        all.insert(all.end(), result.tokens.begin(), result.tokens.end());
        text = decode(tokenizer, all);
        report["text"] = text;
        std::cout << text << "\n";
      } else {
        std::cout << "(no tokenizer at " << tokenizer << "; token ids)";
        for (auto id : result.tokens) std::cout << " " << id;
        std::cout << "\n";
      }
      std::cerr << "\nkeel generate: " << config.model.attention << " attention on " << device.str()
                << (bf16 ? " (bf16)" : "") << ": prefill " << prompt_ids.size() << " tokens in "
                << fixed(result.prefill_seconds * 1000, 1) << " ms; " << result.tokens.size() << " new tokens, decode "
                << fixed(result.decode_tokens_per_second(), 1) << " tokens/s; "
                << (config.model.attention == "linear" ? "linear state " : "KV cache ")
                << fixed(result.cache_bytes / 1048576.0, 2) << " MiB";
      if (result.tda_sparsity > 0) std::cerr << "; TDA sparsity " << fixed(result.tda_sparsity, 3);
      std::cerr << "\n";
    }
    if (!json_path.empty()) fs::write_file_atomic(json_path, report.dump(2) + "\n");
    return 0;
  });
}

}  // namespace keel::cli
