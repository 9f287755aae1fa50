// Run-level progress checks (see progress_detector.h).
#include "stability/progress_detector.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace keel {
namespace {

constexpr int64_t kMaxAutoFlatTokens = 50'000'000;
constexpr int64_t kStallSamples = 64;
// Fewest optimizer updates and tokens before an automatic flat verdict. A small healthy model
// reaches the unigram level and then falls below it only slowly: the tiny test model (2 layers,
// d 64) is still at ~6.0 against an entropy of 5.97 after 150 steps of 256 tokens, on shuffled
// data. Collapsed runs are caught earlier by the step-0 checks (loss above uniform, the ceiling);
// the flat check is for runs long enough that a healthy model has clearly left the unigram level.
constexpr int64_t kMinAutoFlatSteps = 100;
constexpr int64_t kMinAutoFlatTokens = 250'000;
// The slow average's span in steps, at most: a longer span lags the loss by tens of steps early
// in a run, where it falls fastest (at step 100 a span of 200 still read 6.40 for a loss of 6.05).
constexpr double kMaxSlowSpan = 25.0;

Detection none(int64_t step, double value) {
  Detection d;
  d.step = step;
  d.onset_step = step;
  d.value = value;
  return d;
}

}  // namespace

ProgressDetector::ProgressDetector(const StabilityConfig& config, const RunFacts& facts)
    : config_(config), facts_(facts), slow_alpha_(2.0 / (std::clamp(config.window / 2.0, 8.0, kMaxSlowSpan) + 1.0)) {
  const int64_t tps = facts.tokens_per_step;
  const int64_t total_tokens = tps > 0 ? tps * facts.total_steps : 0;
  auto steps_of = [tps](int64_t tokens) { return tps > 0 ? (tokens + tps - 1) / tps : 0; };
  if (config.flat_after_tokens > 0) {
    flat_after_steps_ = steps_of(config.flat_after_tokens);
  } else if (total_tokens > 0) {
    flat_after_steps_ = steps_of(std::min<int64_t>(kMaxAutoFlatTokens, total_tokens * 3 / 10));
    flat_after_steps_ = std::max({flat_after_steps_, 2 * facts.lr_warmup_steps, kMinAutoFlatSteps,
                                  steps_of(kMinAutoFlatTokens)});
  }
  if (config.stall_tokens > 0) {
    stall_steps_ = steps_of(config.stall_tokens);
  } else if (total_tokens > 0) {
    stall_steps_ = facts.total_steps / 4;
  }
  // The stall check needs a baseline-sized stretch at least; shorter windows are noise.
  if (stall_steps_ > 0) stall_steps_ = std::max<int64_t>(stall_steps_, 2 * config.window);
  sample_every_ = std::max<int64_t>(1, stall_steps_ / kStallSamples);
}

Detection ProgressDetector::observe_train(int64_t step, double loss) {
  Detection d = none(step, loss);
  if (!std::isfinite(loss)) return d;
  slow_ = have_slow_ ? slow_ + slow_alpha_ * (loss - slow_) : loss;
  have_slow_ = true;
  if (step % sample_every_ == 0) {
    samples_.emplace_back(step, slow_);
    while (!samples_.empty() && samples_.front().first < step - stall_steps_ - sample_every_) samples_.pop_front();
  }

  // Flat: no better than the unigram distribution after flat_after_steps.
  const double entropy = facts_.unigram_entropy;
  if (!flat_fired_ && entropy > 0 && flat_after_steps_ > 0 && step >= flat_after_steps_ &&
      slow_ > entropy - config_.flat_margin) {
    flat_fired_ = true;
    // Still clearly falling (over the last flat_after_steps / 3)? Then it is slow, not stuck.
    double earlier = slow_;
    const int64_t lookback = std::max<int64_t>(1, flat_after_steps_ / 3);
    for (const auto& [s, value] : samples_) {
      if (s >= step - lookback) {
        earlier = value;
        break;
      }
    }
    const bool falling = earlier - slow_ > 0.1;
    std::ostringstream why;
    why << "after " << step << " steps the loss (slow average " << slow_ << ") is not below the training data's "
        << "unigram entropy " << entropy << " - " << config_.flat_margin
        << ": the model predicts no better than token frequencies";
    if (falling) why << "; it is still falling (" << earlier << " -> " << slow_ << "): the learning rate may be too low";
    d.kind = event_kind::kFlatLoss;
    d.anomaly = !falling;
    d.baseline = entropy;
    d.reason = why.str();
    return d;
  }

  // Stalled: too little progress over the stall window.
  if (stall_steps_ > 0 && step >= config_.warmup_steps + stall_steps_ &&
      (stall_fired_at_ < 0 || step >= stall_fired_at_ + stall_steps_) && !samples_.empty() &&
      samples_.front().first <= step - stall_steps_) {
    double then = samples_.front().second;
    for (const auto& [s, value] : samples_) {
      if (s > step - stall_steps_) break;
      then = value;
    }
    if (then - slow_ < config_.stall_min_drop) {
      stall_fired_at_ = step;
      std::ostringstream why;
      why << "no progress: the loss (slow average) went from " << then << " to " << slow_ << " over the last "
          << stall_steps_ << " steps (less than stall_min_drop = " << config_.stall_min_drop << ")";
      d.kind = event_kind::kStalled;
      d.baseline = then;
      d.reason = why.str();
    }
  }
  return d;
}

Detection ProgressDetector::observe_val(int64_t step, double val_loss) {
  Detection d = none(step, val_loss);
  if (!std::isfinite(val_loss)) return d;
  evals_.emplace_back(val_loss, slow_);
  const size_t n = static_cast<size_t>(config_.val_rise_evals);
  if (evals_.size() > n + 1) evals_.erase(evals_.begin(), evals_.end() - static_cast<std::ptrdiff_t>(n + 1));
  if (evals_.size() < n + 1) return d;
  bool rising = true;
  for (size_t i = 1; i < evals_.size(); ++i) rising = rising && evals_[i].first > evals_[i - 1].first;
  const double val_rise = evals_.back().first - evals_.front().first;
  const bool train_not_rising = evals_.back().second <= evals_.front().second + 0.5 * config_.val_rise_margin;
  if (!rising || val_rise <= config_.val_rise_margin || !train_not_rising) {
    if (!rising) val_fired_ = false;  // the streak ended: a new one may be reported
    return d;
  }
  if (val_fired_) return d;
  val_fired_ = true;
  std::ostringstream why;
  why << "validation loss rose at each of the last " << n << " evaluations (" << evals_.front().first << " -> "
      << val_loss << ") while the training loss went " << evals_.front().second << " -> " << evals_.back().second
      << ": overfitting (repeated data) or a diverging model";
  d.kind = event_kind::kValRising;
  d.baseline = evals_.front().first;
  d.reason = why.str();
  return d;
}

void ProgressDetector::on_rewind(int64_t step) {
  while (!samples_.empty() && samples_.back().first >= step) samples_.pop_back();
  if (step == 0) {
    have_slow_ = false;
    slow_ = 0;
    samples_.clear();
    evals_.clear();
  } else if (!samples_.empty()) {
    slow_ = samples_.back().second;
  }
  flat_fired_ = false;
  stall_fired_at_ = -1;
  val_fired_ = false;
}

nlohmann::json ProgressDetector::to_json() const {
  nlohmann::json samples = nlohmann::json::array();
  for (const auto& [s, v] : samples_) samples.push_back({s, v});
  nlohmann::json evals = nlohmann::json::array();
  for (const auto& [v, t] : evals_) evals.push_back({v, t});
  return {{"slow", slow_},       {"have_slow", have_slow_}, {"flat_fired", flat_fired_},
          {"stall_fired_at", stall_fired_at_}, {"samples", samples}, {"evals", evals},
          {"val_fired", val_fired_}};
}

void ProgressDetector::from_json(const nlohmann::json& j) {
  slow_ = j.at("slow").get<double>();
  have_slow_ = j.at("have_slow").get<bool>();
  flat_fired_ = j.at("flat_fired").get<bool>();
  stall_fired_at_ = j.at("stall_fired_at").get<int64_t>();
  val_fired_ = j.at("val_fired").get<bool>();
  samples_.clear();
  for (const auto& s : j.at("samples")) samples_.emplace_back(s.at(0).get<int64_t>(), s.at(1).get<double>());
  evals_.clear();
  for (const auto& e : j.at("evals")) evals_.emplace_back(e.at(0).get<double>(), e.at(1).get<double>());
}

}  // namespace keel
