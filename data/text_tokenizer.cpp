// Adapters from SentencePiece's Tokenizer and Gpt2Tokenizer to TextTokenizer (see text_tokenizer.h).
#include "data/text_tokenizer.h"

#include <filesystem>

#include "common/fs.h"
#include "data/gpt2_bpe.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"

namespace keel {
namespace {

class SentencePieceTextTokenizer : public TextTokenizer {
 public:
  explicit SentencePieceTextTokenizer(const std::string& model_path) : tokenizer_(model_path) {}
  std::vector<int> encode(const std::string& text) const override { return tokenizer_.encode(text); }
  std::string decode(const std::vector<int>& ids) const override { return tokenizer_.decode(ids); }
  int64_t vocab_size() const override { return tokenizer_.vocab_size(); }
  int eos_id() const override { return tokenizer_.eos_id(); }
  std::string kind() const override { return kTokenizerSentencePiece; }

 private:
  Tokenizer tokenizer_;
};

class Gpt2TextTokenizer : public TextTokenizer {
 public:
  Gpt2TextTokenizer(const std::string& encoder_json, const std::string& vocab_bpe) : tokenizer_(encoder_json, vocab_bpe) {}
  std::vector<int> encode(const std::string& text) const override { return tokenizer_.encode(text); }
  std::string decode(const std::vector<int>& ids) const override { return tokenizer_.decode(ids); }
  int64_t vocab_size() const override { return tokenizer_.vocab_size(); }
  int eos_id() const override { return tokenizer_.eos_id(); }
  std::string kind() const override { return kTokenizerGpt2; }

 private:
  Gpt2Tokenizer tokenizer_;
};

}  // namespace

std::unique_ptr<TextTokenizer> open_tokenizer(const DatasetTokenizer& description) {
  if (description.kind == kTokenizerGpt2) {
    if (description.files.size() != 2) {
      throw DataError("GPT-2's tokenizer needs encoder.json and vocab.bpe; " + std::to_string(description.files.size()) +
                      " file(s) given");
    }
    return std::make_unique<Gpt2TextTokenizer>(description.files[0], description.files[1]);
  }
  if (description.kind == kTokenizerSentencePiece) {
    if (description.files.size() != 1) {
      throw DataError("a SentencePiece tokenizer is one .model file; " + std::to_string(description.files.size()) +
                      " file(s) given");
    }
    return std::make_unique<SentencePieceTextTokenizer>(description.files[0]);
  }
  throw DataError("unknown tokenizer kind '" + description.kind + "' (sentencepiece or gpt2)");
}

std::unique_ptr<TextTokenizer> open_tokenizer_at(const std::string& path, const std::string& tokenizer_cache) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  if (stdfs::is_directory(path, ec)) return open_tokenizer(dataset_tokenizer(path, tokenizer_cache));
  if (!stdfs::is_regular_file(path, ec)) throw DataError("tokenizer '" + path + "' does not exist");
  DatasetTokenizer description;
  if (stdfs::path(path).extension() == ".json") {
    description.kind = kTokenizerGpt2;
    description.files = {path, (stdfs::path(path).parent_path() / "vocab.bpe").string()};
  } else {
    description.kind = kTokenizerSentencePiece;
    description.files = {path};
  }
  return open_tokenizer(description);
}

}  // namespace keel
