// Dataset preparation: gather documents, train or reuse the tokenizer, encode, shuffle, split,
// write shards, then meta.json last (see prepare.h). Streams through temporary files in out_dir
// (data/prepare_stream.h), so memory does not grow with the corpus.
#include "data/prepare.h"

#include <fnmatch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>
#include <thread>

#include "common/fs.h"
#include "data/corpus.h"
#include "data/prepare_sources.h"
#include "data/prepare_stream.h"
#include "data/token_shard.h"
#include "data/token_statistics.h"
#include "data/gpt2_bpe.h"
#include "data/text_tokenizer.h"
#include "data/tokenizer.h"

namespace keel {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kTokenizerFile = "tokenizer.model";
constexpr const char* kTokenizerVocabFile = "tokenizer.vocab";
constexpr const char* kGpt2EncoderFile = "encoder.json";
constexpr const char* kGpt2MergesFile = "vocab.bpe";
// Below this many bytes of text per vocabulary entry a tokenizer is mostly unused ids: the model
// spends parameters on pieces it never sees (SentencePiece also gives fewer pieces than asked).
constexpr int64_t kTextBytesPerPieceWarning = 64;
// Tokenizer training reads one line at a time and drops lines over its max_sentence_length, so
// long paragraphs are cut (at spaces) into lines of at most this many bytes.
constexpr size_t kTrainingLineBytes = 8000;
// Text read back from the document spill at a time (tokenizer training text).
constexpr size_t kEncodeChunkBytes = size_t{16} << 20;


// A uniform draw from [0, n), n > 0, by rejection: values below 2^64 mod n are redrawn, so every
// result is equally likely. Written out because std::uniform_int_distribution is not specified
// exactly and differs between standard libraries.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  for (;;) {
    const uint64_t x = rng();
    if (x >= threshold) return x % n;
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

namespace ps = prepare_stream;

// Writes the tokenizer's training text: every non-blank line of every document, long lines cut at
// spaces (or, with none, at a UTF-8 character boundary).
void write_training_text(ps::DocumentSpill& spill, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  KEEL_CHECK(out.good(), "cannot create tokenizer training text '" << path << "'");
  spill.for_each_chunk(kEncodeChunkBytes, [&out](std::vector<std::string>& documents) {
    for (const auto& document : documents) {
      size_t start = 0;
      while (start <= document.size()) {
        size_t end = document.find('\n', start);
        if (end == std::string::npos) end = document.size();
        std::string_view line(document.data() + start, end - start);
        while (line.size() > kTrainingLineBytes) {
          size_t cut = line.rfind(' ', kTrainingLineBytes);
          if (cut == std::string_view::npos || cut == 0) {
            cut = kTrainingLineBytes;
            while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
          }
          out << line.substr(0, cut) << '\n';
          line.remove_prefix(cut);
          if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
        }
        if (line.find_first_not_of(" \t\r") != std::string_view::npos) out << line << '\n';
        start = end + 1;
      }
    }
  });
  out.close();
  KEEL_CHECK(out.good(), "writing tokenizer training text '" << path << "' failed");
}

// Trains into temporary names, then renames, so tokenizer.model is never a half-written file.
void train_into(ps::DocumentSpill& spill, const std::string& out_dir, int64_t vocab_size) {
  const std::string text_path = dataset_file(out_dir, "tokenizer_input.txt");
  const std::string prefix = dataset_file(out_dir, "tokenizer.tmp");
  write_training_text(spill, text_path);
  const auto start = std::chrono::steady_clock::now();
  spdlog::info("prepare: training a {}-piece BPE tokenizer on {} ({} MB)", vocab_size, text_path,
               keel::fs::file_size(text_path) >> 20);
  train_tokenizer(text_path, vocab_size, prefix);
  keel::fs::rename_durable(prefix + ".vocab", dataset_file(out_dir, kTokenizerVocabFile));
  keel::fs::rename_durable(prefix + ".model", dataset_file(out_dir, kTokenizerFile));
  keel::fs::remove_all(text_path);  // derived and large; the fingerprint says what it held
  spdlog::info("prepare: tokenizer trained in {:.1f} s", seconds_since(start));
}

// Encodes every document, spread over up to 8 threads (both tokenizers encode from const,
// thread-safe state; it is the slow step, ~1.5 MB/s per thread for SentencePiece). Results are stored per document, so the
// output does not depend on the thread count.
std::vector<std::vector<int>> encode_documents(const TextTokenizer& tokenizer, const std::vector<std::string>& documents) {
  std::vector<std::vector<int>> encoded(documents.size());
  std::atomic<size_t> next_document{0};
  std::mutex error_mutex;
  std::exception_ptr first_error;
  auto work = [&] {
    for (size_t i = next_document++; i < documents.size(); i = next_document++) {
      try {
        encoded[i] = tokenizer.encode(documents[i]);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
        return;
      }
    }
  };
  const size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < std::min(threads, documents.size()); ++t) helpers.emplace_back(work);
  work();
  for (auto& helper : helpers) helper.join();
  if (first_error) std::rethrow_exception(first_error);
  return encoded;
}

// Removes meta.json first (so the folder stops counting as a complete dataset), then shards of an
// older dataset, whose leftovers a glob like train_*.bin would otherwise pick up.
void clear_old_dataset(const std::string& out_dir) {
  const std::string meta = dataset_file(out_dir, kDatasetMetaFile);
  if (keel::fs::exists(meta)) {
    keel::fs::remove_all(meta);
    keel::fs::fsync_path(out_dir);
  }
  for (const auto& name : keel::fs::list_dir(out_dir)) {
    if (::fnmatch("train_*.bin", name.c_str(), 0) == 0 || ::fnmatch("val_*.bin", name.c_str(), 0) == 0) {
      keel::fs::remove_all(dataset_file(out_dir, name));
    }
  }
}


void validate_options(const PrepareOptions& options) {
  auto bad = [](const std::string& problem) { throw DataError("prepare: " + problem); };
  if (options.out_dir.empty()) bad("out_dir is empty");
  const bool gpt2 = options.tokenizer == kTokenizerGpt2;
  if (!gpt2 && options.tokenizer != kTokenizerSentencePiece) {
    bad("unknown tokenizer '" + options.tokenizer + "' (sentencepiece or gpt2)");
  }
  if (!gpt2 && (options.vocab_size < 256 || options.vocab_size > 65536)) {
    bad("vocab_size " + std::to_string(options.vocab_size) + " is outside [256, 65536] (shards store uint16 ids)");
  }
  if (!(options.val_fraction > 0.0 && options.val_fraction <= 0.5)) {
    bad("val_fraction " + std::to_string(options.val_fraction) + " is outside (0, 0.5]");
  }
  if (options.shard_tokens <= 0) bad("shard_tokens must be positive, got " + std::to_string(options.shard_tokens));
  if (!options.use_embedded_corpus && options.text_files.empty()) {
    bad("nothing to prepare: the embedded corpus is off and no text files were given");
  }
  if (options.corpus != kCorpusEmbedded && options.corpus != kCorpusLarge) {
    bad("unknown corpus '" + options.corpus + "' (embedded or large)");
  }
  if (options.encode_chunk_bytes <= 0) bad("encode_chunk_bytes must be positive");
}

}  // namespace



std::vector<int64_t> document_order(int64_t count, int64_t shuffle_seed) {
  KEEL_CHECK(count >= 0, "document_order: negative document count " << count);
  std::vector<int64_t> order(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) order[static_cast<size_t>(i)] = i;
  if (shuffle_seed < 0) return order;
  std::mt19937_64 rng(static_cast<uint64_t>(shuffle_seed));
  for (int64_t i = count - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(i) + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

PrepareResult prepare_dataset(const PrepareOptions& options) {
  validate_options(options);
  const auto start = std::chrono::steady_clock::now();
  const std::string& out_dir = options.out_dir;
  keel::fs::make_dirs(out_dir);

  // Documents go to a temporary file as they are read (in file order), never all into memory.
  ps::DocumentSpill spill(dataset_file(out_dir, "documents.tmp"));
  const json sources = gather_documents(options, spill);
  const std::string inputs = spill.fingerprint();
  spdlog::info("prepare: {} documents from {} source(s) ({})", spill.count(), sources.size(), inputs);

  // What the tokenizer depends on, and what the whole dataset depends on. GPT-2's tokenizer
  // depends only on its two files, so for it the inputs are part of the dataset key (a
  // SentencePiece tokenizer's key already holds them).
  const bool gpt2 = options.tokenizer == kTokenizerGpt2;
  const std::string gpt2_dir = dataset_file(options.tokenizer_cache, "gpt2");
  const std::string gpt2_encoder = dataset_file(gpt2_dir, kGpt2EncoderFile);
  const std::string gpt2_merges = dataset_file(gpt2_dir, kGpt2MergesFile);
  if (gpt2) {
    for (const auto& file : {gpt2_encoder, gpt2_merges}) {
      if (!keel::fs::exists(file)) {
        throw DataError("prepare: GPT-2's tokenizer file '" + file + "' is missing (scripts/fetch_tokenizers.sh " +
                        options.tokenizer_cache + " fetches it)");
      }
    }
  }
  const json tokenizer_key =
      gpt2 ? json{{"kind", kTokenizerGpt2},
                  {"encoder_crc32", keel::fs::crc32_file(gpt2_encoder)},
                  {"merges_crc32", keel::fs::crc32_file(gpt2_merges)}}
           : json{{"inputs", inputs}, {"vocab_size", options.vocab_size}, {"recipe", kTokenizerRecipeVersion}};
  json dataset_key = {{"tokenizer", tokenizer_key},
                      {"val_fraction", options.val_fraction},
                      {"shard_tokens", options.shard_tokens},
                      {"shuffle_seed", options.shuffle_seed}};
  if (gpt2) dataset_key["inputs"] = inputs;
  json old_meta;
  try {
    old_meta = read_dataset_meta(out_dir);
  } catch (const DataError&) {
    // No (usable) earlier dataset: build everything.
  }
  if (old_meta.is_object() && old_meta.value("dataset_key", json()) == dataset_key && dataset_ready(out_dir)) {
    spdlog::info("prepare: dataset in {} is up to date", out_dir);
    return load_prepared_dataset(out_dir);
  }
  const std::string model_path = dataset_file(out_dir, gpt2 ? kGpt2EncoderFile : kTokenizerFile);
  const bool reuse_tokenizer =
      !gpt2 && old_meta.is_object() && old_meta.value("tokenizer_key", json()) == tokenizer_key &&
      keel::fs::exists(model_path) &&
      old_meta.value("tokenizer", json::object()).value("crc32", int64_t{-1}) == keel::fs::crc32_file(model_path);

  clear_old_dataset(out_dir);
  PrepareResult result;
  result.out_dir = out_dir;
  result.tokenizer_model = model_path;
  result.num_documents = spill.count();
  DatasetTokenizer description;
  std::vector<std::string> tokenizer_files;  // names inside out_dir
  if (gpt2) {
    // Copied, not linked: the dataset stays whole when the cache goes or the folder moves.
    for (const auto& [from, name] : {std::pair{gpt2_encoder, kGpt2EncoderFile}, std::pair{gpt2_merges, kGpt2MergesFile}}) {
      keel::fs::write_file_atomic(dataset_file(out_dir, name), keel::fs::read_file(from));
      tokenizer_files.push_back(name);
    }
    description = {kTokenizerGpt2, {dataset_file(out_dir, kGpt2EncoderFile), dataset_file(out_dir, kGpt2MergesFile)}};
    spdlog::info("prepare: GPT-2's byte-level BPE from {}", gpt2_dir);
  } else {
    if (reuse_tokenizer) {
      spdlog::info("prepare: reusing tokenizer {} (same inputs and vocab size)", model_path);
    } else {
      train_into(spill, out_dir, options.vocab_size);
      result.trained_tokenizer = true;
    }
    tokenizer_files.push_back(kTokenizerFile);
    description = {kTokenizerSentencePiece, {model_path}};
  }
  const std::unique_ptr<TextTokenizer> tokenizer = open_tokenizer(description);
  result.tokenizer_vocab_size = tokenizer->vocab_size();
  result.eos_id = tokenizer->eos_id();
  KEEL_CHECK(result.tokenizer_vocab_size <= 65536 && result.eos_id >= 0,
             "tokenizer '" << model_path << "' has " << result.tokenizer_vocab_size << " pieces and EOS id "
                           << result.eos_id << "; uint16 shards need at most 65536 pieces and an EOS token");
  const int64_t text_bytes = spill.bytes();
  if (text_bytes < kTextBytesPerPieceWarning * result.tokenizer_vocab_size) {
    spdlog::warn("prepare: {} KB of text is little for a {}-id {} tokenizer (about {} KB or more suits it): most ids "
                 "will be rare or unseen{}",
                 text_bytes >> 10, result.tokenizer_vocab_size, tokenizer->kind(),
                 (kTextBytesPerPieceWarning * result.tokenizer_vocab_size) >> 10,
                 gpt2 ? "" : "; a smaller data.vocab_size fits this text better");
  }

  // Encode in chunks of documents (in file order), each chunk spread over the encoding threads,
  // and append every document's ids to a temporary file; keep only its token count.
  const auto encode_start = std::chrono::steady_clock::now();
  ps::TokenSpill token_spill(dataset_file(out_dir, "tokens.tmp"));
  {
    ps::ProgressLog progress("encoding");
    int64_t bytes_done = 0;
    spill.for_each_chunk(static_cast<size_t>(options.encode_chunk_bytes), [&](std::vector<std::string>& documents) {
      for (const auto& ids : encode_documents(*tokenizer, documents)) token_spill.append(ids);
      for (const auto& document : documents) bytes_done += static_cast<int64_t>(document.size());
      progress.update(token_spill.documents(), bytes_done, token_spill.total_tokens());
    });
    token_spill.finish();
    progress.update(token_spill.documents(), bytes_done, token_spill.total_tokens(), /*force=*/true);
  }

  // Each source's tokens (EOS not counted), for meta.json: documents are in source order.
  json sources_out = sources;
  int64_t listed = 0;
  for (const auto& source : sources) listed += source.at("documents").get<int64_t>();
  if (listed == token_spill.documents()) {  // not so when one document was cut into its lines
    int64_t first = 0;
    for (auto& source : sources_out) {
      const int64_t count = source.at("documents").get<int64_t>();
      int64_t tokens = 0;
      for (int64_t i = first; i < first + count; ++i) tokens += token_spill.tokens(i);
      source["tokens"] = tokens;
      first += count;
      spdlog::info("prepare: source {} ({}): {} documents, {} tokens", source.at("kind").get<std::string>(),
                   source.at("path").get<std::string>(), count, tokens);
    }
  }

  // Documents are written in shuffled order (document_order), and every k-th of that order
  // (starting with the first) goes to validation: deterministic, spread over all sources, about
  // 1/k of the tokens, and at least one document on each side. Each document ends with EOS.
  const int64_t stride = std::max<int64_t>(2, std::llround(1.0 / options.val_fraction));
  const std::vector<int64_t> order = document_order(token_spill.documents(), options.shuffle_seed);
  int64_t val_documents = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const int64_t tokens = token_spill.tokens(order[i]) + 1;  // + EOS
    const bool is_val = static_cast<int64_t>(i) % stride == 0;
    (is_val ? result.val_tokens : result.train_tokens) += tokens;
    val_documents += is_val ? 1 : 0;
  }
  ps::ShardSetWriter train_writer(out_dir, "train", result.train_tokens, options.shard_tokens);
  ps::ShardSetWriter val_writer(out_dir, "val", result.val_tokens, options.shard_tokens);
  std::vector<int64_t> train_counts(65536, 0);  // unigram counts of the training tokens
  std::vector<uint16_t> document;
  const uint16_t eos = static_cast<uint16_t>(result.eos_id);  // ids < 65536: checked above
  ps::ProgressLog progress("writing shards");
  int64_t written = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    token_spill.read(order[i], document);
    document.push_back(eos);  // marks the document boundary
    const bool is_val = static_cast<int64_t>(i) % stride == 0;
    (is_val ? val_writer : train_writer).append(document.data(), static_cast<int64_t>(document.size()));
    if (!is_val) {
      for (const uint16_t id : document) ++train_counts[id];
    }
    written += static_cast<int64_t>(document.size());
    progress.update(static_cast<int64_t>(i + 1), 2 * written, written);
  }
  const std::vector<json> train_shards = train_writer.finish();
  const std::vector<json> val_shards = val_writer.finish();
  double train_entropy = 0.0;  // as unigram_entropy (data/token_statistics.h) computes it
  for (const int64_t count : train_counts) {
    if (count == 0) continue;
    const double p = static_cast<double>(count) / static_cast<double>(result.train_tokens);
    train_entropy -= p * std::log(p);
  }
  spdlog::info("prepare: encoded {} train + {} val tokens in {:.1f} s ({}; train unigram entropy {:.4f} nats)",
               result.train_tokens, result.val_tokens, seconds_since(encode_start),
               options.shuffle_seed < 0 ? std::string("documents in file order")
                                        : "documents shuffled with seed " + std::to_string(options.shuffle_seed),
               train_entropy);
  for (const auto& shard : train_shards)
    result.train_shards.push_back(dataset_file(out_dir, shard.at("file").get<std::string>()));
  for (const auto& shard : val_shards)
    result.val_shards.push_back(dataset_file(out_dir, shard.at("file").get<std::string>()));

  const json meta = {
      {"format", "keel-token-dataset"},
      {"format_version", kDatasetMetaFormatVersion},
      {"sources", sources_out},
      {"corpus", options.use_embedded_corpus ? options.corpus : "none"},
      {"inputs", inputs},
      {"num_documents", result.num_documents},
      {"train_documents", result.num_documents - val_documents},
      {"val_documents", val_documents},
      {"vocab_size", gpt2 ? result.tokenizer_vocab_size : options.vocab_size},
      {"tokenizer_vocab_size", result.tokenizer_vocab_size},
      {"eos_id", result.eos_id},
      {"tokenizer",
       {{"kind", description.kind},
        {"file", tokenizer_files.front()},
        {"files", tokenizer_files},
        {"crc32", keel::fs::crc32_file(model_path)}}},
      {"val_fraction", options.val_fraction},
      {"shard_tokens", options.shard_tokens},
      {"shuffle_seed", options.shuffle_seed},
      {"train_tokens", result.train_tokens},
      {"train_unigram_entropy", train_entropy},
      {"val_tokens", result.val_tokens},
      {"train_shards", train_shards},
      {"val_shards", val_shards},
      {"tokenizer_key", tokenizer_key},
      {"dataset_key", dataset_key},
  };
  keel::fs::write_file_atomic(dataset_file(out_dir, kDatasetMetaFile), meta.dump(2) + "\n");  // last: marks completion
  spdlog::info("prepare: dataset ready in {} ({} train / {} val shards, {:.1f} s)", out_dir, train_shards.size(),
               val_shards.size(), seconds_since(start));
  return result;
}

PrepareOptions prepare_options_from(const DataConfig& config) {
  PrepareOptions options;
  options.corpus_cache = config.corpus_cache;
  options.text_files = config.text_files;
  options.doc_separator = config.doc_separator;
  options.tokenizer = config.tokenizer;
  options.tokenizer_cache = config.tokenizer_cache;
  options.use_embedded_corpus = config.use_embedded_corpus;
  options.corpus = config.corpus;
  options.out_dir = config.dir;
  options.vocab_size = config.vocab_size;
  options.val_fraction = config.val_fraction;
  options.shuffle_seed = config.shuffle_seed;
  return options;
}

}  // namespace keel
