// SentencePiece BPE tokenizer: training from a text file and encode/decode for `prepare` and
// for sampling. Settings favour exact, any-input round trips for language modelling: byte
// fallback (no <unk> for unseen characters), identity normalization and no whitespace collapsing
// (decode(encode(text)) == text, newlines included), digits split. Training is deterministic
// (fixed seed, no shuffling), so the same text gives the same model. Torch-free; the SentencePiece
// headers stay inside tokenizer.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace keel {

// Bumped whenever the training settings below change, so `prepare` retrains stale tokenizers.
inline constexpr int kTokenizerRecipeVersion = 1;

// Trains a BPE model on `text_file` (one sentence or paragraph per line) and writes
// `model_prefix`.model and `model_prefix`.vocab. `max_training_sentences` caps the lines used
// (SentencePiece's input_sentence_size; ~400000 keeps training quick). Ids: <unk>=0, <s>=1,
// </s>=2 (EOS). vocab_size is a soft limit: a small corpus may give a smaller vocabulary rather
// than fail. Throws KeelError naming the file on failure.
void train_tokenizer(const std::string& text_file, int64_t vocab_size, const std::string& model_prefix,
                     int64_t max_training_sentences = 400000);

class Tokenizer {
 public:
  Tokenizer();
  explicit Tokenizer(const std::string& model_path);  // load(model_path)
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Loads a SentencePiece .model file; throws KeelError naming it if it is missing or invalid.
  void load(const std::string& model_path);
  bool loaded() const { return processor_ != nullptr; }

  std::vector<int> encode(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;
  int64_t vocab_size() const;
  int eos_id() const;
  const std::string& model_path() const { return model_path_; }

 private:
  const sentencepiece::SentencePieceProcessor& processor() const;

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::string model_path_;
};

}  // namespace keel
