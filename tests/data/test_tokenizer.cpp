// SentencePiece wrapper: a tiny BPE model trains quickly and deterministically, encodes any text
// (byte fallback) and decodes it back exactly; bad paths give errors naming the file.
#include <gtest/gtest.h>

#include "common/check.h"
#include "data/tokenizer.h"
#include "tests/data/data_test_util.h"

namespace keel {
namespace {

using data_test::expect_error;
using data_test::ScratchDir;

TEST(Tokenizer, TrainEncodeDecodeRoundTrip) {
  ScratchDir dir("tokenizer");
  data_test::write_text(dir.file("train.txt"), data_test::english_like_text(400));
  train_tokenizer(dir.file("train.txt"), 300, dir.file("tok"), 400000);
  ASSERT_TRUE(keel::fs::exists(dir.file("tok.model")));

  Tokenizer tokenizer(dir.file("tok.model"));
  EXPECT_EQ(tokenizer.model_path(), dir.file("tok.model"));
  EXPECT_GT(tokenizer.vocab_size(), 256);  // 256 byte pieces + specials + merges
  EXPECT_LE(tokenizer.vocab_size(), 300);
  EXPECT_EQ(tokenizer.eos_id(), 2);

  for (const std::string text :
       {std::string("The farmer walked to the river in the morning."),
        std::string("  Two lines,\n\tindented; digits 12345 and \xC3\xA9t\xC3\xA9 \xE2\x9C\x93!"), std::string("")}) {
    const std::vector<int> ids = tokenizer.encode(text);
    for (int id : ids) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, tokenizer.vocab_size());
      ASSERT_NE(id, 0) << "byte fallback means no <unk>";
    }
    EXPECT_EQ(tokenizer.decode(ids), text);
  }
  // With 256 byte pieces, 300 leaves room for characters and a few merges ("▁the", "er", ...):
  // familiar text takes fewer pieces than bytes.
  const std::string familiar = "The farmer walked to the river";
  EXPECT_LT(tokenizer.encode(familiar).size(), familiar.size());

  // Deterministic: training again on the same text gives the same pieces and scores (the .model
  // also embeds the output prefix, so compare the .vocab listing).
  train_tokenizer(dir.file("train.txt"), 300, dir.file("again"), 400000);
  EXPECT_EQ(keel::fs::read_file(dir.file("again.vocab")), keel::fs::read_file(dir.file("tok.vocab")));
  EXPECT_EQ(Tokenizer(dir.file("again.model")).encode(familiar), tokenizer.encode(familiar));

  Tokenizer moved = std::move(tokenizer);
  EXPECT_EQ(moved.decode(moved.encode("moved")), "moved");
}

TEST(Tokenizer, ErrorsNameTheFile) {
  ScratchDir dir("tokenizer_errors");
  expect_error<keel::KeelError>([&] { Tokenizer t(dir.file("missing.model")); }, {dir.file("missing.model")});
  data_test::write_text(dir.file("garbage.model"), "not a model");
  expect_error<keel::KeelError>([&] { Tokenizer t(dir.file("garbage.model")); }, {dir.file("garbage.model")});
  expect_error<keel::KeelError>([&] { train_tokenizer(dir.file("none.txt"), 300, dir.file("x"), 1000); },
                                {dir.file("none.txt")});
  Tokenizer unloaded;
  EXPECT_FALSE(unloaded.loaded());
  expect_error<keel::KeelError>([&] { unloaded.encode("x"); }, {"before load"});
}

}  // namespace
}  // namespace keel
