// SentencePiece training and encode/decode behind a Torch-free, exception-based API (see tokenizer.h).
#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <string>
#include <unordered_map>

#include "common/check.h"

namespace keel {

namespace {
// Fixes SentencePiece's sampling of training lines when a corpus exceeds the sentence cap.
constexpr unsigned kTrainingSeed = 20240520;
}  // namespace

void train_tokenizer(const std::string& text_file, int64_t vocab_size, const std::string& model_prefix,
                     int64_t max_training_sentences) {
  std::error_code ec;
  KEEL_CHECK(std::filesystem::is_regular_file(text_file, ec),
             "tokenizer training text '" << text_file << "' does not exist");
  KEEL_CHECK(vocab_size > 0, "tokenizer vocab_size must be positive, got " << vocab_size);
  KEEL_CHECK(max_training_sentences > 0,
             "tokenizer max_training_sentences must be positive, got " << max_training_sentences);
  sentencepiece::SetRandomGeneratorSeed(kTrainingSeed);
  // The map form (not a "--flag=value" string) keeps paths with spaces or '=' intact.
  const std::unordered_map<std::string, std::string> options = {
      {"input", text_file},
      {"model_prefix", model_prefix},
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"hard_vocab_limit", "false"},
      {"byte_fallback", "true"},  // any byte sequence encodes; no <unk> at train time
      {"character_coverage", "0.9995"},
      {"normalization_rule_name", "identity"},  // exact round trips: no NFKC rewriting
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},  // indentation becomes whole pieces
      {"split_digits", "true"},
      {"max_sentence_length", "16384"},  // bytes; longer lines would be dropped silently
      {"input_sentence_size", std::to_string(max_training_sentences)},
      {"shuffle_input_sentence", "false"},
      {"num_threads", "2"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"minloglevel", "1"},  // SentencePiece's per-iteration progress is noise in our logs
  };
  const auto status = sentencepiece::SentencePieceTrainer::Train(options);
  KEEL_CHECK(status.ok(), "training the tokenizer on '" << text_file << "' into '" << model_prefix
                                                        << ".model' failed: " << status.ToString());
}

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(const std::string& model_path) { load(model_path); }
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

void Tokenizer::load(const std::string& model_path) {
  std::error_code ec;
  KEEL_CHECK(std::filesystem::is_regular_file(model_path, ec), "tokenizer model '" << model_path << "' does not exist");
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = processor->Load(model_path);
  KEEL_CHECK(status.ok(), "cannot load tokenizer model '" << model_path << "': " << status.ToString());
  processor_ = std::move(processor);
  model_path_ = model_path;
}

const sentencepiece::SentencePieceProcessor& Tokenizer::processor() const {
  KEEL_CHECK(processor_ != nullptr, "tokenizer used before load()");
  return *processor_;
}

std::vector<int> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = processor().Encode(text, &ids);
  KEEL_CHECK(status.ok(), "tokenizer '" << model_path_ << "' cannot encode text: " << status.ToString());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string text;
  const auto status = processor().Decode(ids, &text);
  KEEL_CHECK(status.ok(), "tokenizer '" << model_path_ << "' cannot decode ids: " << status.ToString());
  return text;
}

int64_t Tokenizer::vocab_size() const { return processor().GetPieceSize(); }

int Tokenizer::eos_id() const { return processor().eos_id(); }

}  // namespace keel
