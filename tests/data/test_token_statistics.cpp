// Token statistics: the unigram entropy against hand-computed values and an independent numpy
// computation over the shard files, meta.json's stored entropy and EOS id (used only when they fit),
// and document spans on a shard with known EOS positions.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>

#include "data/token_statistics.h"
#include "tests/data/data_test_util.h"

namespace keel {
namespace {

using data_test::expect_error;
using data_test::ScratchDir;

// Deterministic, skewed tokens: a few frequent ids and a long tail up to `max_id` (a 64-bit LCG).
std::vector<uint16_t> skewed_tokens(size_t count, uint64_t seed, uint32_t max_id) {
  std::vector<uint16_t> tokens(count);
  uint64_t state = seed;
  for (auto& token : tokens) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    const uint32_t r = static_cast<uint32_t>(state >> 33);
    token = static_cast<uint16_t>(r % 4 == 0 ? (r >> 2) % (max_id + 1) : (r >> 2) % 5);
  }
  return tokens;
}

std::string write_meta(const ScratchDir& dir, const std::string& body) {
  data_test::write_text(dir.file("meta.json"), body);
  return dir.path();
}

TEST(UnigramEntropy, KnownDistributions) {
  ScratchDir dir("entropy_known");
  auto entropy_of = [&](const std::vector<uint16_t>& tokens) {
    write_token_shard(dir.file("s.bin"), tokens);
    return unigram_entropy(std::vector<std::string>{dir.file("s.bin")});
  };
  EXPECT_NEAR(entropy_of({1, 1, 2, 2}), std::log(2.0), 1e-12);
  EXPECT_NEAR(entropy_of({0, 7, 65535, 300}), std::log(4.0), 1e-12);
  EXPECT_NEAR(entropy_of({5, 5, 5}), 0.0, 1e-12);
  // p = 1/2, 1/4, 1/4: H = 1.5 log 2.
  EXPECT_NEAR(entropy_of({9, 9, 1, 2}), 1.5 * std::log(2.0), 1e-12);
  EXPECT_EQ(entropy_of({}), 0.0);
  const std::vector<uint16_t> tokens = {3, 3, 4};
  EXPECT_NEAR(unigram_entropy(tokens.data(), 3), -(2.0 / 3) * std::log(2.0 / 3) - (1.0 / 3) * std::log(1.0 / 3),
              1e-12);
}

TEST(UnigramEntropy, MatchesNumpyOverShardsAndPrefixes) {
  ScratchDir dir("entropy_numpy");
  const std::vector<std::string> shards = {dir.file("a.bin"), dir.file("b.bin")};
  write_token_shard(shards[0], skewed_tokens(5000, 1, 65535));
  write_token_shard(shards[1], skewed_tokens(4000, 2, 300));  // another distribution: prefixes differ

  const double all = unigram_entropy(shards);
  EXPECT_NEAR(all, data_test::python_unigram_entropy(shards), 1e-10);
  EXPECT_GT(all, 1.0);
  // A prefix that stops inside the second shard, one inside the first, and one past the end.
  const double across = unigram_entropy(shards, 7000);
  EXPECT_NEAR(across, data_test::python_unigram_entropy(shards, 7000), 1e-10);
  EXPECT_GT(std::abs(across - all), 1e-4) << "the limit must change what is counted";
  EXPECT_NEAR(unigram_entropy(shards, 1234), data_test::python_unigram_entropy(shards, 1234), 1e-10);
  EXPECT_NEAR(unigram_entropy(shards, 1234), unigram_entropy(std::vector<std::string>{shards[0]}, 1234), 0.0);
  EXPECT_EQ(unigram_entropy(shards, 1'000'000), all);
  // Shard order matters for a prefix.
  const std::vector<std::string> reversed = {shards[1], shards[0]};
  EXPECT_NEAR(unigram_entropy(reversed, 3000), data_test::python_unigram_entropy(reversed, 3000), 1e-10);
}

TEST(UnigramEntropy, BadArgumentsAreErrors) {
  ScratchDir dir("entropy_bad");
  write_token_shard(dir.file("a.bin"), {1, 2, 3});
  expect_error<DataError>([&] { unigram_entropy(std::vector<std::string>{dir.file("a.bin")}, -1); },
                          {"max_tokens", "-1"});
  expect_error<DataError>([&] { unigram_entropy(std::vector<std::string>{dir.file("missing.bin")}); },
                          {dir.file("missing.bin")});
}

TEST(DatasetUnigramEntropy, UsesMetaOnlyWhenItListsTheseShards) {
  ScratchDir dir("entropy_dataset");
  const std::vector<std::string> shards = {dir.file("train_000.bin"), dir.file("train_001.bin")};
  write_token_shard(shards[0], skewed_tokens(3000, 3, 1000));
  write_token_shard(shards[1], skewed_tokens(3000, 4, 1000));
  const double computed = data_test::python_unigram_entropy(shards);

  // No meta.json (a foreign dataset): computed, no error.
  EXPECT_NEAR(dataset_unigram_entropy(dir.path(), shards), computed, 1e-10);
  // A meta.json listing exactly these shards: its value, whatever the shards hold.
  write_meta(dir, R"({"format_version": 1, "train_unigram_entropy": 1.25,
                      "train_shards": [{"file": "train_000.bin"}, {"file": "train_001.bin"}]})");
  EXPECT_EQ(dataset_unigram_entropy(dir.path(), shards), 1.25);
  // Another selection of shards than meta.json describes: computed.
  EXPECT_NEAR(dataset_unigram_entropy(dir.path(), {shards[0]}),
              data_test::python_unigram_entropy({shards[0]}), 1e-10);
  EXPECT_NEAR(dataset_unigram_entropy(dir.path(), {shards[1], shards[0]}), computed, 1e-10);
  // meta.json without the entropy (an older dataset), malformed, or with an unusable value: computed.
  write_meta(dir, R"({"format_version": 1, "train_shards": [{"file": "train_000.bin"}, {"file": "train_001.bin"}]})");
  EXPECT_NEAR(dataset_unigram_entropy(dir.path(), shards), computed, 1e-10);
  write_meta(dir, R"({"format_version": 1, "train_unigram_entropy": "high",
                      "train_shards": [{"file": "train_000.bin"}, {"file": "train_001.bin"}]})");
  EXPECT_NEAR(dataset_unigram_entropy(dir.path(), shards), computed, 1e-10);
  write_meta(dir, "{ not json");
  EXPECT_NEAR(dataset_unigram_entropy(dir.path(), shards), computed, 1e-10);

  expect_error<DataError>([&] { dataset_unigram_entropy(dir.path(), {}); }, {dir.path(), "no training shards"});
  write_token_shard(dir.file("empty.bin"), {});
  expect_error<DataError>([&] { dataset_unigram_entropy(dir.path(), {dir.file("empty.bin")}); },
                          {dir.file("empty.bin"), "no tokens"});
}

TEST(DatasetEosId, ReadsMetaOrGivesMinusOne) {
  ScratchDir dir("eos_id");
  EXPECT_EQ(dataset_eos_id(dir.path()), -1);
  EXPECT_EQ(dataset_eos_id(dir.file("no-such-folder")), -1);
  write_meta(dir, R"({"format_version": 1, "eos_id": 7})");
  EXPECT_EQ(dataset_eos_id(dir.path()), 7);
  write_meta(dir, R"({"format_version": 1, "eos_id": 70000})");
  EXPECT_EQ(dataset_eos_id(dir.path()), -1);
  write_meta(dir, R"({"format_version": 1})");
  EXPECT_EQ(dataset_eos_id(dir.path()), -1);
  write_meta(dir, R"({"format_version": 2, "eos_id": 7})");
  EXPECT_EQ(dataset_eos_id(dir.path()), -1);
  write_meta(dir, "[1, 2");
  EXPECT_EQ(dataset_eos_id(dir.path()), -1);
}

TEST(DocumentSpan, CountsDocumentsBeforeAndBoundariesInside) {
  ScratchDir dir("document_span");
  constexpr uint16_t E = 3;  // EOS at 5, 9, 10 (an empty document) and 19 (the last token)
  const std::vector<uint16_t> tokens = {10, 11, 12, 13, 14, E, 20, 21, 22, E,
                                        E,  40, 41, 42, 43, 44, 45, 46, 47, E};
  write_token_shard(dir.file("s.bin"), tokens);
  const TokenShard shard(dir.file("s.bin"));
  auto span = [&](int64_t offset, int64_t length) {
    const DocumentSpan s = document_span(shard, offset, length, E);
    return std::make_pair(s.first_document, s.boundaries);
  };
  using P = std::pair<int64_t, int64_t>;
  EXPECT_EQ(span(0, 0), P(0, 0));
  EXPECT_EQ(span(0, 20), P(0, 4));
  EXPECT_EQ(span(0, 5), P(0, 0));
  EXPECT_EQ(span(5, 1), P(0, 1));   // a window starting on EOS is in the document that EOS ends
  EXPECT_EQ(span(6, 4), P(1, 1));   // [6, 10): document 1 and its EOS at 9
  EXPECT_EQ(span(6, 3), P(1, 0));
  EXPECT_EQ(span(10, 1), P(2, 1));  // the empty document 2 is just its EOS
  EXPECT_EQ(span(11, 8), P(3, 0));
  EXPECT_EQ(span(11, 9), P(3, 1));
  EXPECT_EQ(span(19, 1), P(3, 1));
  EXPECT_EQ(span(20, 0), P(4, 0));  // the end of the shard: after every document
  // Another EOS id sees other boundaries (token 40 occurs once, at 11).
  const DocumentSpan other = document_span(shard, 12, 8, 40);
  EXPECT_EQ(other.first_document, 1);
  EXPECT_EQ(other.boundaries, 0);

  expect_error<DataError>([&] { document_span(shard, 15, 6, E); }, {dir.file("s.bin"), "20 tokens"});
  expect_error<DataError>([&] { document_span(shard, 21, 0, E); }, {dir.file("s.bin")});
  expect_error<DataError>([&] { document_span(shard, -1, 2, E); }, {dir.file("s.bin")});
  expect_error<DataError>([&] { document_span(shard, 0, -1, E); }, {dir.file("s.bin")});
  expect_error<DataError>([&] { document_span(shard, 0, 1, -1); }, {dir.file("s.bin"), "EOS id -1"});
  expect_error<DataError>([&] { document_span(shard, 0, 1, 65536); }, {dir.file("s.bin"), "EOS id 65536"});
}

TEST(DocumentSpan, ShardTruncatedUnderneathIsADataError) {
  // A training run describes the data of a stability event with document_span while the shard
  // may have been cut underneath: an error naming it, not a SIGBUS.
  ScratchDir dir("document_span_truncated");
  write_token_shard(dir.file("s.bin"), std::vector<uint16_t>(5000, 3));
  const TokenShard shard(dir.file("s.bin"));
  EXPECT_EQ(document_span(shard, 4000, 10, 3).first_document, 4000);
  ASSERT_EQ(::truncate(dir.file("s.bin").c_str(), 2048), 0);
  expect_error<DataError>([&] { document_span(shard, 4000, 10, 3); },
                          {dir.file("s.bin"), "changed on disk while in use", "now 2048 bytes"});
  expect_error<DataError>([&] { unigram_entropy(std::vector<std::string>{dir.file("s.bin")}); },
                          {dir.file("s.bin"), "truncated"});
}

}  // namespace
}  // namespace keel
