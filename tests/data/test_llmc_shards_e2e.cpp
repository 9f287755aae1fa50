// A folder of llm.c shards trains as it is (no meta.json, no tokenizer beside it), through the
// real `keel` binary: the shards come from an independent writer (tests/data/write_llmc_shards.mjs:
// tiktoken's gpt2 encoding, llm.c's header), training finds them by llm.c's names, and `keel
// generate` and keel-tokenize use GPT-2's tokenizer for them (ids checked against tiktoken's).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/token_shard.h"
#include "tests/worker/process_util.h"

namespace keel {
namespace {
using namespace testing_util;

const std::string kTokenizerCache = std::string(KEEL_SOURCE_DIR) + "/.cache/keel/tokenizers";

TEST(LlmcShards, AFolderOfLlmcShardsTrainsAndGeneratesWithGpt2sTokenizer) {
  const std::string root = fresh_dir("llmc_shards");
  const std::string data = root + "/shards";
  const auto wrote = run_process("node " + std::string(KEEL_SOURCE_DIR) + "/tests/data/write_llmc_shards.mjs " +
                                 kTokenizerCache + "/node/node_modules " + KEEL_SOURCE_DIR +
                                 "/.cache/keel/corpus/nlp-corpus/package/builds " + data);
  ASSERT_EQ(wrote.exit_code, 0) << wrote.output << "\n(scripts/fetch_tokenizers.sh installs tiktoken)";

  const std::string run = root + "/run";
  const auto train = run_process(keel_binary() + " train " + tiny_config() + " --run-dir " + run +
                                 " --set data.dir=" + data + " --set data.tokenizer_cache=" + kTokenizerCache +
                                 " --set model.vocab_size=50304 --set train.steps=4 --set train.eval_every=2"
                                 " --set train.log_every=1 --set checkpoint.every=2 --set diagnostics.every=0");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  int val_records = 0;
  for (const auto& record : read_jsonl(run + "/metrics.jsonl")) val_records += record.contains("val_loss") ? 1 : 0;
  EXPECT_GE(val_records, 2) << "evaluated on tiny_val_000000.bin at steps 2 and 4";
  EXPECT_FALSE(std::ifstream(data + "/meta.json").good()) << "training must not write into the shard folder";

  // A small vocabulary cannot hold GPT-2's ids: refused before training, naming the key.
  const auto small = run_process(keel_binary() + " train " + tiny_config() + " --run-dir " + root + "/small" +
                                 " --set data.dir=" + data + " --set data.tokenizer_cache=" + kTokenizerCache);
  EXPECT_NE(small.exit_code, 0);
  EXPECT_NE(small.output.find("vocab_size"), std::string::npos) << small.output;

  const auto gen = run_process(keel_binary() + " generate " + run + " --prompt 'The house was' --max-tokens 6 --seed 1 " +
                               "--json " + root + "/gen.json");
  ASSERT_EQ(gen.exit_code, 0) << gen.output;
  const auto report = nlohmann::json::parse(read_bytes(root + "/gen.json"));
  EXPECT_EQ(report["text"].get<std::string>().rfind("The house was", 0), 0u) << report["text"];

  // keel-tokenize on the shard folder encodes exactly as tiktoken did.
  const auto sample = nlohmann::json::parse(read_bytes(root + "/sample.json"));
  std::ofstream(root + "/sample.txt", std::ios::binary) << sample["text"].get<std::string>();
  const auto tokenize = run_process(std::string(KEEL_BINARY_DIR) + "/cli/keel-tokenize " + data + " " + root +
                                    "/sample.txt " + root + "/sample.bin --tokenizer-cache " + kTokenizerCache);
  ASSERT_EQ(tokenize.exit_code, 0) << tokenize.output;
  const TokenShard shard(root + "/sample.bin");
  std::vector<int> ids(shard.tokens(), shard.tokens() + shard.num_tokens());
  EXPECT_EQ(ids, sample["ids"].get<std::vector<int>>());
}

}  // namespace
}  // namespace keel
