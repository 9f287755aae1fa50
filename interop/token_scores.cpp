// Per-token log-probabilities of a checkpoint (see token_scores.h).
#include "interop/token_scores.h"

#include <torch/torch.h>

#include "checkpoint/safetensors.h"
#include "checkpoint_torch/training_checkpoint.h"
#include "common/check.h"
#include "common/config.h"
#include "model/gpt.h"

namespace keel::interop {

std::vector<SequenceScore> score_sequences(const std::string& checkpoint_dir, const ModelConfig& model,
                                           const std::vector<std::vector<int64_t>>& sequences,
                                           const ScoreOptions& options) {
  const int64_t vocab = options.vocab_limit > 0 ? options.vocab_limit : model.vocab_size;
  if (vocab > model.vocab_size)
    throw ConfigError("--vocab " + std::to_string(vocab) + " is larger than model.vocab_size (" +
                      std::to_string(model.vocab_size) + ")");
  if (sequences.empty()) throw ConfigError("no token sequence to score");
  for (size_t s = 0; s < sequences.size(); ++s) {
    const auto& seq = sequences[s];
    const std::string which = "sequence " + std::to_string(s);
    if (seq.size() < 2) throw ConfigError(which + " has " + std::to_string(seq.size()) + " tokens; scoring needs >= 2");
    if (static_cast<int64_t>(seq.size()) > model.context_length)
      throw ConfigError(which + " has " + std::to_string(seq.size()) + " tokens, more than model.context_length (" +
                        std::to_string(model.context_length) + ")");
    for (size_t i = 0; i < seq.size(); ++i)
      if (seq[i] < 0 || seq[i] >= vocab)
        throw ConfigError(which + ", position " + std::to_string(i) + ": token id " + std::to_string(seq[i]) +
                          " is outside [0, " + std::to_string(vocab) + ")");
  }
  if (options.threads > 0) torch::set_num_threads(options.threads);

  Gpt gpt(model);  // fp32, CPU, whole (TP shards are gathered on load)
  load_model_weights(checkpoint_dir, gpt);
  gpt->eval();
  torch::NoGradGuard no_grad;

  std::vector<SequenceScore> scores;
  std::vector<torch::Tensor> kept_logits;
  for (const auto& seq : sequences) {
    const int64_t n = static_cast<int64_t>(seq.size());
    auto idx = torch::tensor(seq, torch::kLong).view({1, n});           // (1, n)
    auto logits = gpt->forward(idx)[0].narrow(1, 0, vocab);              // (n, V)
    auto logp = torch::log_softmax(logits, /*dim=*/1);                   // (n, V) fp32
    auto next = idx[0].narrow(0, 1, n - 1).view({n - 1, 1});             // (n-1, 1)
    auto picked = logp.narrow(0, 0, n - 1).gather(1, next).view({n - 1}).contiguous();  // (n-1)
    SequenceScore score;
    score.tokens = seq;
    const float* p = picked.data_ptr<float>();
    score.logprobs.assign(p, p + (n - 1));
    scores.push_back(std::move(score));
    if (!options.logits_path.empty()) kept_logits.push_back(logits.contiguous());
  }
  if (!options.logits_path.empty()) {
    std::vector<checkpoint::TensorView> views;
    for (size_t i = 0; i < kept_logits.size(); ++i) {
      const auto& x = kept_logits[i];
      views.push_back(checkpoint::TensorView{"logits." + std::to_string(i), checkpoint::DType::F32, x.sizes().vec(),
                                             x.data_ptr(), x.nbytes()});
    }
    checkpoint::write_safetensors(options.logits_path, views, {{"format", "pt"}, {"vocab", std::to_string(vocab)}});
  }
  return scores;
}

}  // namespace keel::interop
