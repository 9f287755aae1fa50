// `keel export --format hf`, `keel import --format hf` and `keel score` end to end through the real
// binaries, checked against an independent Python GPT-2 (tests/interop/hf_reference.py: its own
// safetensors reader and writer, a from-scratch forward with HF names and layouts, no Keel code):
//   - a trained tiny model, exported: the Python forward of the HF folder gives `keel score`'s
//     log-probs (max abs diff < 1e-4, fp32 vs float64), and import(export(x)) is bit-identical;
//   - a TP=2 run with padded vocabulary, untied head, ReLU and no biases exports whole and right;
//   - GPT-2 folders written by Python (three layouts/dtypes) import and score like the Python
//     forward, and a run trains from one with train.init_from;
//   - every inexpressible model is refused with exit 2 naming the setting, leaving no --out;
//   - a GPT-2-tokenized dataset exports GPT-2's tokenizer files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "checkpoint/safetensors.h"
#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;
namespace stdfs = std::filesystem;

const std::string kPython = "/usr/bin/python3 " + std::string(KEEL_SOURCE_DIR) + "/tests/interop/hf_reference.py";

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_bytes(path)); }

ProcessResult keel(const std::string& args) { return run_process(keel_binary() + " " + args); }
ProcessResult python(const std::string& args) { return run_process(kPython + " " + args); }

// Every tensor of `a` is in `b` with the same dtype, shape and bytes, and nothing else is.
void expect_bit_identical(const std::string& a_path, const std::string& b_path) {
  checkpoint::SafetensorsFile a(a_path), b(b_path);
  EXPECT_EQ(a.names().size(), b.names().size());
  for (const auto& name : a.names()) {
    ASSERT_TRUE(b.has(name)) << name;
    const auto x = a.view(name), y = b.view(name);
    EXPECT_EQ(x.dtype, y.dtype) << name;
    EXPECT_EQ(x.shape, y.shape) << name;
    ASSERT_EQ(x.nbytes, y.nbytes) << name;
    EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes), 0) << name << " differs";
  }
}

// The "model:" block of a resolved config.yaml.
std::string model_section(const std::string& yaml) {
  const size_t start = yaml.find("\nmodel:");
  EXPECT_NE(start, std::string::npos) << yaml;
  size_t end = start + 1;
  while ((end = yaml.find('\n', end + 1)) != std::string::npos && end + 1 < yaml.size() &&
         (yaml[end + 1] == ' ' || yaml[end + 1] == '#')) {
  }
  return yaml.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

std::string newest_checkpoint(const std::string& run) {
  std::string newest;
  for (const auto& e : stdfs::directory_iterator(run + "/checkpoints"))
    if (e.path().filename().string().rfind("step_", 0) == 0 && e.path().string() > newest) newest = e.path().string();
  return newest;
}

// Nothing at `out` and no staging folder beside it.
void expect_nothing_written(const std::string& out) {
  EXPECT_FALSE(stdfs::exists(out)) << out;
  for (const auto& e : stdfs::directory_iterator(stdfs::path(out).parent_path()))
    EXPECT_EQ(e.path().string().find(out + ".partial"), std::string::npos) << e.path();
}

// keel score CHECKPOINT on TOKENS (--vocab V if V > 0) into JSON, compared with the Python forward.
void expect_scores_match(const std::string& checkpoint, const std::string& hf_dir, const std::string& tokens,
                         int64_t vocab, const std::string& json) {
  auto score = keel("score " + checkpoint + " --tokens " + tokens + " --json " + json +
                    (vocab > 0 ? " --vocab " + std::to_string(vocab) : std::string()));
  ASSERT_EQ(score.exit_code, 0) << score.output;
  auto compare = python("compare " + hf_dir + " " + json + " --tol 1e-4");
  EXPECT_EQ(compare.exit_code, 0) << compare.output;
  std::printf("%s: %s", hf_dir.c_str(), compare.output.c_str());
}

TEST(HfExport, MatchesAnIndependentGpt2ForwardAndRoundTripsBitIdentically) {
  const std::string run = fresh_dir("hf_export_run"), hf = fresh_dir("hf_export_out"),
                    back = fresh_dir("hf_export_back"), work = fresh_dir("hf_export_work");
  auto train = keel_train(run, "--set train.steps=20 --set train.eval_every=20");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  auto exported = keel("export " + run + " --format hf --out " + hf);
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.model",
                        "tokenizer_config.json", "special_tokens_map.json"})
    EXPECT_TRUE(stdfs::is_regular_file(hf + "/" + f)) << f;
  const auto config = read_json(hf + "/config.json");
  EXPECT_EQ(config["model_type"], "gpt2");
  EXPECT_EQ(config["activation_function"], "gelu_new");
  EXPECT_EQ(config["vocab_size"], 1024);
  EXPECT_EQ(config["n_positions"], 32);
  EXPECT_EQ(config["eos_token_id"], 2);  // the SentencePiece dataset's </s>
  EXPECT_EQ(config["bos_token_id"], 2);
  const auto tokenizer = read_json(hf + "/tokenizer_config.json");
  EXPECT_EQ(tokenizer["tokenizer_class"], "LlamaTokenizer");
  EXPECT_EQ(tokenizer["legacy"], true);
  EXPECT_EQ(tokenizer["add_bos_token"], false);
  EXPECT_EQ(read_bytes(hf + "/tokenizer.model"), read_bytes(test_dataset() + "/tokenizer.model"));
  auto check = python("check " + hf);
  EXPECT_EQ(check.exit_code, 0) << check.output;

  shell("mkdir -p " + work);
  ASSERT_EQ(python("tokens " + work + "/tokens.json --vocab 1024 --length 32 --count 3 --seed 1").exit_code, 0);
  expect_scores_match(run, hf, work + "/tokens.json", 0, work + "/score.json");
  // The comparison can fail: one log-prob moved by 1e-3 is caught.
  auto report = read_json(work + "/score.json");
  report["sequences"][1]["logprobs"][5] = report["sequences"][1]["logprobs"][5].get<double>() + 1e-3;
  shell("echo '" + report.dump() + "' > " + work + "/perturbed.json");
  EXPECT_EQ(python("compare " + hf + " " + work + "/perturbed.json --tol 1e-4").exit_code, 1);

  // import(export(x)) == x, bit for bit, with the same model section; it scores identically.
  auto imported = keel("import --format hf " + hf + " --out " + back);
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  const std::string checkpoint = newest_checkpoint(run);
  expect_bit_identical(checkpoint + "/model.safetensors", back + "/model.safetensors");
  EXPECT_EQ(model_section(read_bytes(back + "/config.yaml")), model_section(read_bytes(checkpoint + "/config.yaml")));
  auto rescored = keel("score " + back + " --tokens " + work + "/tokens.json --json " + work + "/back.json");
  ASSERT_EQ(rescored.exit_code, 0) << rescored.output;
  EXPECT_EQ(read_json(work + "/back.json")["sequences"], read_json(work + "/score.json")["sequences"]);
}

TEST(HfExport, TensorParallelPaddedUntiedReluBiasFreeRunExportsWhole) {
  const std::string run = fresh_dir("hf_export_tp_run"), hf = fresh_dir("hf_export_tp_out"),
                    work = fresh_dir("hf_export_tp_work");
  auto train = keel_train(run, "--nproc 2 --set parallel.tp=2 --set train.steps=10 --set train.eval_every=10 "
                               "--set model.vocab_size=1088 --set model.tie_embeddings=false "
                               "--set model.activation=relu --set model.bias=false");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  ASSERT_TRUE(stdfs::exists(newest_checkpoint(run) + "/model.tp1-of-2.safetensors"));
  auto exported = keel("export " + run + " --format hf --out " + hf);
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_NE(exported.output.find("64 padding rows cut"), std::string::npos) << exported.output;
  const auto config = read_json(hf + "/config.json");
  EXPECT_EQ(config["vocab_size"], 1024);  // the tokenizer's, not the padded 1088
  EXPECT_EQ(config["tie_word_embeddings"], false);
  EXPECT_EQ(config["activation_function"], "relu");
  EXPECT_EQ(config["keel_export"]["dropped_vocab_rows"], 64);
  auto check = python("check " + hf);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  shell("mkdir -p " + work);
  ASSERT_EQ(python("tokens " + work + "/tokens.json --vocab 1024 --length 32 --count 2 --seed 2").exit_code, 0);
  expect_scores_match(run, hf, work + "/tokens.json", 1024, work + "/score.json");
  // Without --vocab keel score normalises over all 1088 rows, which the comparison refuses.
  ASSERT_EQ(keel("score " + run + " --tokens " + work + "/tokens.json --json " + work + "/full.json").exit_code, 0);
  EXPECT_EQ(read_json(work + "/full.json")["vocab"], 1088);
  EXPECT_EQ(python("compare " + hf + " " + work + "/full.json").exit_code, 1);
}

TEST(HfImport, PythonWrittenGpt2FoldersScoreLikeThePythonForward) {
  const std::string work = fresh_dir("hf_import_work");
  shell("mkdir -p " + work);
  struct Variant {
    const char* name;
    std::string sets;
    int64_t vocab;
  } variants[] = {{"gpt2", "--set vocab_size=1024 --set n_positions=32", 1024}, {"untied-relu", "", 320},
                  {"f16-head", "", 320}};
  for (const auto& v : variants) {
    const std::string hf = work + "/" + v.name, ck = work + "/" + v.name + "-checkpoint";
    ASSERT_EQ(python(std::string("make ") + hf + " --variant " + v.name + " " + v.sets).exit_code, 0);
    auto imported = keel("import --format hf " + hf + " --out " + ck);
    ASSERT_EQ(imported.exit_code, 0) << imported.output;
    EXPECT_TRUE(stdfs::exists(ck + "/manifest.json"));
    const std::string tokens = work + "/" + v.name + "-tokens.json";
    ASSERT_EQ(python("tokens " + tokens + " --vocab " + std::to_string(v.vocab) + " --length 16 --count 2").exit_code, 0);
    expect_scores_match(ck, hf, tokens, 0, work + "/" + v.name + "-score.json");
  }
  // The text token format (one sequence per line) scores like the JSON one.
  const auto json_scores = read_json(work + "/untied-relu-score.json")["sequences"];
  std::string text;
  for (const auto& s : json_scores) {
    for (const auto& id : s["tokens"]) text += std::to_string(id.get<int64_t>()) + " ";
    text += "\n\n";
  }
  shell("printf '" + text + "' > " + work + "/tokens.txt");
  auto scored = keel("score " + work + "/untied-relu-checkpoint --tokens " + work + "/tokens.txt --json " + work + "/t.json");
  ASSERT_EQ(scored.exit_code, 0) << scored.output;
  EXPECT_EQ(read_json(work + "/t.json")["sequences"], json_scores);
  // Bad token files are config errors naming the problem.
  shell("echo '[1, 2, 320]' > " + work + "/bad-id.json");
  auto bad_id = keel("score " + work + "/untied-relu-checkpoint --tokens " + work + "/bad-id.json");
  EXPECT_EQ(bad_id.exit_code, 2) << bad_id.output;
  EXPECT_NE(bad_id.output.find("token id 320 is outside [0, 320)"), std::string::npos) << bad_id.output;
  shell("echo '1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17' > " + work + "/long.txt");
  auto too_long = keel("score " + work + "/untied-relu-checkpoint --tokens " + work + "/long.txt");
  EXPECT_EQ(too_long.exit_code, 2) << too_long.output;
  EXPECT_NE(too_long.output.find("more than model.context_length (16)"), std::string::npos) << too_long.output;

  // A run starts from the imported GPT-2 with train.init_from: every parameter comes from it.
  const std::string ck = work + "/gpt2-checkpoint", run = fresh_dir("hf_import_train");
  auto train = run_process(keel_binary() + " train " + ck + "/config.yaml --run-dir " + run + " --set train.init_from=" +
                           ck + " --set data.dir=" + test_dataset() +
                           " --set data.auto_prepare=false --set train.steps=3 --set train.warmup_steps=1"
                           " --set train.batch_size=2 --set train.eval_batches=1 --set train.threads=1"
                           " --set checkpoint.every=0 --set metrics.linger_seconds=0");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  const auto init = read_json(run + "/init_from.json");
  EXPECT_TRUE(init["fresh_parameters"].empty()) << init.dump();
  EXPECT_EQ(model_section(read_bytes(run + "/config.yaml")), model_section(read_bytes(ck + "/config.yaml")));
}

TEST(HfExport, RefusesInexpressibleModelsAndWritesNothing) {
  const std::string work = fresh_dir("hf_refuse_work");
  shell("mkdir -p " + work);
  ASSERT_EQ(python("make " + work + "/hf --variant gpt2").exit_code, 0);
  ASSERT_EQ(keel("import --format hf " + work + "/hf --out " + work + "/base").exit_code, 0);
  const std::string base_yaml = read_bytes(work + "/base/config.yaml");
  const std::pair<std::string, std::string> edits[] = {
      {"norm: pre_ln", "norm: none"},           {"activation: gelu", "activation: swiglu"},
      {"embed_scale: 1", "embed_scale: sqrt_d"}, {"embed_norm: none", "embed_norm: layernorm"},
      {"attention: softmax", "attention: linear"}};
  for (const auto& [from, to] : edits) {
    const size_t at = base_yaml.find("  " + from);
    ASSERT_NE(at, std::string::npos) << from << " not in\n" << base_yaml;
    const std::string ck = work + "/edited", out = work + "/out";
    shell("rm -rf " + ck + " && cp -r " + work + "/base " + ck);
    std::string yaml = base_yaml;
    yaml.replace(at + 2, from.size(), to);
    std::FILE* f = std::fopen((ck + "/config.yaml").c_str(), "w");
    std::fwrite(yaml.data(), 1, yaml.size(), f);
    std::fclose(f);
    auto r = keel("export " + ck + " --format hf --out " + out);
    EXPECT_EQ(r.exit_code, 2) << to << ": " << r.output;
    std::string named = "model." + to;
    named.erase(std::remove(named.begin(), named.end(), ' '), named.end());
    named.replace(named.find(':'), 1, "=");
    EXPECT_NE(r.output.find(named), std::string::npos) << named << " not in: " << r.output;
    expect_nothing_written(out);
  }
  auto format = keel("export " + work + "/base --format onnx --out " + work + "/out");
  EXPECT_EQ(format.exit_code, 2) << format.output;
  expect_nothing_written(work + "/out");
  shell("mkdir -p " + work + "/taken && echo keep > " + work + "/taken/file");
  auto taken = keel("export " + work + "/base --format hf --no-tokenizer --out " + work + "/taken");
  EXPECT_EQ(taken.exit_code, 2) << taken.output;
  EXPECT_EQ(read_bytes(work + "/taken/file"), "keep\n");

  const std::pair<const char*, const char*> bad_configs[] = {{"activation_function", "\"gelu\""},
                                                             {"layer_norm_epsilon", "1e-6"},
                                                             {"scale_attn_by_inverse_layer_idx", "true"},
                                                             {"model_type", "\"llama\""}};
  for (const auto& [field, value] : bad_configs) {
    const std::string hf = work + "/bad-" + field, out = work + "/bad-out";
    ASSERT_EQ(python("make " + hf + " --set '" + field + "=" + value + "'").exit_code, 0);
    auto r = keel("import --format hf " + hf + " --out " + out);
    EXPECT_EQ(r.exit_code, 2) << field << ": " << r.output;
    EXPECT_NE(r.output.find(field), std::string::npos) << r.output;
    expect_nothing_written(out);
  }
}

TEST(HfExport, Gpt2DatasetExportsGpt2TokenizerFiles) {
  const std::string gpt2 = std::string(KEEL_SOURCE_DIR) + "/.cache/keel/tokenizers/gpt2";
  if (!stdfs::exists(gpt2 + "/encoder.json")) GTEST_SKIP() << "no " << gpt2 << " (scripts/fetch_tokenizers.sh)";
  const std::string work = fresh_dir("hf_gpt2_work");
  shell("mkdir -p " + work + "/data");
  // A folder of llm.c shards (no meta.json) is GPT-2-tokenized (data/dataset_meta.h).
  for (const char* name : {"tiny_train_000001.bin", "tiny_val_000000.bin"}) {
    std::vector<int32_t> header(256, 0);
    header[0] = 20240520;
    header[1] = 1;
    header[2] = 4;
    const uint16_t tokens[4] = {50256, 464, 3290, 13};
    std::FILE* f = std::fopen((work + "/data/" + name).c_str(), "wb");
    std::fwrite(header.data(), 4, header.size(), f);
    std::fwrite(tokens, 2, 4, f);
    std::fclose(f);
  }
  ASSERT_EQ(python("make " + work + "/hf --set vocab_size=50304 --set n_embd=8 --set n_head=2 --set n_layer=1").exit_code, 0);
  ASSERT_EQ(keel("import --format hf " + work + "/hf --out " + work + "/ck").exit_code, 0);
  auto exported = keel("export " + work + "/ck --format hf --data " + work + "/data --out " + work + "/out");
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_EQ(read_bytes(work + "/out/vocab.json"), read_bytes(gpt2 + "/encoder.json"));
  EXPECT_EQ(read_bytes(work + "/out/merges.txt"), read_bytes(gpt2 + "/vocab.bpe"));
  const auto config = read_json(work + "/out/config.json");
  EXPECT_EQ(config["vocab_size"], 50257);
  EXPECT_EQ(config["eos_token_id"], 50256);
  EXPECT_EQ(config["keel_export"]["dropped_vocab_rows"], 47);
  const auto tokenizer = read_json(work + "/out/tokenizer_config.json");
  EXPECT_EQ(tokenizer["tokenizer_class"], "GPT2Tokenizer");
  EXPECT_EQ(tokenizer["eos_token"], "<|endoftext|>");
  EXPECT_EQ(read_json(work + "/out/special_tokens_map.json")["bos_token"], "<|endoftext|>");
  auto check = python("check " + work + "/out");
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

}  // namespace
}  // namespace keel
