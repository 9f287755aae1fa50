// The LR range test of a restart from the initial state (see lr_probe.h).
#include "stability/lr_probe.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/check.h"
#include "stability/json_doubles.h"

namespace keel {
namespace {

// The smoothed loss forgets in ~3 steps: a 15-50 step probe cannot afford fastai's 0.98, and a
// single noisy batch must not decide the choice either.
constexpr double kLossBeta = 0.7;

std::string format_lr(double x) {
  std::ostringstream s;
  s.precision(3);
  s << x;
  return s.str();
}

}  // namespace

void LearningRateProbe::plan(double failed_fraction, int64_t steps, double span_decades, double divisor,
                             double divergence_margin) {
  KEEL_CHECK(failed_fraction > 0 && std::isfinite(failed_fraction),
             "LR probe: the failed LR fraction must be positive, got " << failed_fraction);
  KEEL_CHECK(steps >= 2, "LR probe: needs at least 2 steps, got " << steps);
  KEEL_CHECK(span_decades > 0 && divisor >= 1 && divergence_margin > 0,
             "LR probe: span " << span_decades << ", divisor " << divisor << ", margin " << divergence_margin);
  *this = LearningRateProbe();
  state_ = State::kPlanned;
  failed_ = failed_fraction;
  steps_ = steps;
  span_decades_ = span_decades;
  divisor_ = divisor;
  margin_ = divergence_margin;
}

void LearningRateProbe::begin() {
  KEEL_CHECK(state_ == State::kPlanned, "LR probe: begin() without a planned probe");
  state_ = State::kActive;
}

double LearningRateProbe::fraction_at(int64_t step) const {
  const double t = std::clamp(static_cast<double>(step) / static_cast<double>(steps_ - 1), 0.0, 1.0);
  return failed_ * std::pow(10.0, -span_decades_ * (1.0 - t));
}

bool LearningRateProbe::observe(int64_t step, double loss, bool finite) {
  KEEL_CHECK(state_ == State::kActive, "LR probe: observe(step " << step << ") while not active");
  last_step_ = step;
  if (!finite || !std::isfinite(loss)) {
    diverged_ = true;
    diverged_step_ = step;
    finish("a non-finite loss or gradient");
    return true;
  }
  ema_ = kLossBeta * ema_ + (1.0 - kLossBeta) * loss;
  ema_weight_ = kLossBeta * ema_weight_ + (1.0 - kLossBeta);
  const double smoothed = ema_ / ema_weight_;
  // The loss of step s was computed with the weights the updates of steps < s made: it answers
  // for the LR of step s - 1.
  const double responsible = fraction_at(std::max<int64_t>(step - 1, 0));
  if (best_step_ < 0 || smoothed < best_smoothed_) {
    best_smoothed_ = smoothed;
    best_fraction_ = responsible;
    best_step_ = step;
  } else if (smoothed > best_smoothed_ + margin_) {
    diverged_ = true;
    diverged_step_ = step;
    finish("the smoothed loss rose above its best");
    return true;
  }
  if (step >= steps_ - 1) {
    finish("the range ended without a divergence");
    return true;
  }
  return false;
}

void LearningRateProbe::finish(const char* why) {
  state_ = State::kFinished;
  end_reason_ = why;
  // Before any loss (a non-finite first step) the bottom of the range is the only measured LR.
  const double best = best_step_ >= 0 ? best_fraction_ : fraction_at(0);
  chosen_ = best / divisor_;
}

std::string LearningRateProbe::report() const {
  std::ostringstream s;
  s << "LR range test from the initial state over " << (last_step_ + 1) << " of " << steps_ << " steps (LR x"
    << format_lr(fraction_at(0)) << " -> x" << format_lr(failed_) << " of the peak): ";
  if (best_step_ >= 0) {
    s << "smoothed loss lowest (" << format_lr(best_smoothed_) << ") at step " << best_step_ << ", LR x"
      << format_lr(best_fraction_);
  } else {
    s << "no finite loss";
  }
  if (diverged_) {
    s << "; diverged at step " << diverged_step_ << " (LR x" << format_lr(fraction_at(diverged_step_)) << ", "
      << end_reason_ << ")";
  } else {
    s << "; " << end_reason_;
  }
  s << "; the run restarts at x" << format_lr(chosen_) << " (the best LR / " << format_lr(divisor_) << ")";
  return s.str();
}

nlohmann::json LearningRateProbe::to_json() const {
  using stability_json::encode;
  return {{"state", static_cast<int>(state_)}, {"failed", encode(failed_)},
          {"steps", steps_},                   {"span_decades", encode(span_decades_)},
          {"divisor", encode(divisor_)},       {"margin", encode(margin_)},
          {"ema", encode(ema_)},               {"ema_weight", encode(ema_weight_)},
          {"best_smoothed", encode(best_smoothed_)}, {"best_fraction", encode(best_fraction_)},
          {"best_step", best_step_},           {"last_step", last_step_},
          {"diverged", diverged_},             {"diverged_step", diverged_step_},
          {"end_reason", end_reason_},         {"chosen", encode(chosen_)}};
}

void LearningRateProbe::from_json(const nlohmann::json& j) {
  using stability_json::decode;
  const int state = j.at("state").get<int>();
  KEEL_CHECK(state >= 0 && state <= static_cast<int>(State::kFinished), "LR probe: bad saved state " << state);
  state_ = static_cast<State>(state);
  failed_ = decode(j.at("failed"));
  steps_ = j.at("steps").get<int64_t>();
  span_decades_ = decode(j.at("span_decades"));
  divisor_ = decode(j.at("divisor"));
  margin_ = decode(j.at("margin"));
  ema_ = decode(j.at("ema"));
  ema_weight_ = decode(j.at("ema_weight"));
  best_smoothed_ = decode(j.at("best_smoothed"));
  best_fraction_ = decode(j.at("best_fraction"));
  best_step_ = j.at("best_step").get<int64_t>();
  last_step_ = j.at("last_step").get<int64_t>();
  diverged_ = j.at("diverged").get<bool>();
  diverged_step_ = j.at("diverged_step").get<int64_t>();
  end_reason_ = j.at("end_reason").get<std::string>();
  chosen_ = decode(j.at("chosen"));
}

}  // namespace keel
