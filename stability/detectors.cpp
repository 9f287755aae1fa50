// The anomaly detectors (see detectors.h for the rules they follow).
#include "stability/detectors.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace keel {
namespace {

// Enough baseline to trust a z-score (a small window lowers the bar to its own size).
bool baseline_ready(const RobustZScore& baseline, const StabilityConfig& config) {
  return baseline.count() >= std::min<int64_t>(kMinBaselineSamples, config.window);
}

Detection quiet(int64_t step, double value) {
  Detection d;
  d.step = step;
  d.onset_step = step;
  d.value = value;
  return d;
}

// " (largest layer grad norm: #i = v)" or "" without per-layer norms.
std::string largest_layer(const std::vector<double>& layer_grad_norms) {
  if (layer_grad_norms.empty()) return "";
  auto it = std::max_element(layer_grad_norms.begin(), layer_grad_norms.end());
  std::ostringstream s;
  s << " (largest layer grad norm: #" << (it - layer_grad_norms.begin()) << " = " << *it << ")";
  return s.str();
}

// Span of the fast loss average: a quarter of the sustained stretch, at least 2 steps.
double fast_alpha_for(const StabilityConfig& config) {
  const double span = std::max<double>(2.0, static_cast<double>(config.sustained_steps) / 4.0);
  return 2.0 / (span + 1.0);
}

}  // namespace

int64_t baseline_start_step(const StabilityConfig& config) { return config.warmup_steps; }

// ---- NonFiniteDetector ----

Detection NonFiniteDetector::observe(int64_t step, double loss, double grad_norm, bool grads_finite,
                                     const std::vector<double>& layer_grad_norms) const {
  Detection d = quiet(step, loss);
  std::ostringstream why;
  if (!std::isfinite(loss)) why << "loss is " << loss;
  if (!std::isfinite(grad_norm)) why << (why.tellp() > 0 ? "; " : "") << "grad norm is " << grad_norm;
  if (!grads_finite) why << (why.tellp() > 0 ? "; " : "") << "the trainer reported non-finite gradients";
  for (size_t i = 0; i < layer_grad_norms.size(); ++i) {
    if (!std::isfinite(layer_grad_norms[i])) {
      why << (why.tellp() > 0 ? "; " : "") << "layer #" << i << " grad norm is " << layer_grad_norms[i];
      break;  // the first bad layer is enough evidence
    }
  }
  if (why.tellp() > 0) {
    d.anomaly = true;
    d.kind = event_kind::kNonFinite;
    d.value = std::isfinite(loss) ? grad_norm : loss;
    d.reason = why.str();
  }
  return d;
}

// ---- GradNormExplosionDetector ----

GradNormExplosionDetector::GradNormExplosionDetector(const StabilityConfig& config)
    : config_(config),
      log_norms_(config.method, static_cast<size_t>(config.window), config.ema_beta,
                 kMinLogGradNormScale) {}

bool GradNormExplosionDetector::ready() const { return baseline_ready(log_norms_, config_); }

Detection GradNormExplosionDetector::observe(int64_t step, double grad_norm,
                                             const std::vector<double>& layer_grad_norms) const {
  Detection d = quiet(step, grad_norm);
  const bool have_baseline = ready();
  if (have_baseline) {
    d.baseline = std::exp(log_norms_.center());
    d.z = grad_norm > 0 ? log_norms_.z(std::log(grad_norm)) : -INFINITY;
  }
  std::ostringstream why;
  if (have_baseline && d.z > config_.grad_z_threshold && grad_norm >= config_.grad_min_factor * d.baseline) {
    why << "grad norm " << grad_norm << " is x" << grad_norm / d.baseline << " the baseline "
        << d.baseline << " (log-space z = " << d.z << " > " << config_.grad_z_threshold << ")";
    // Above the ceiling as well: harm in itself, never a new level to follow.
    d.absolute = config_.grad_norm_ceiling > 0 && grad_norm > config_.grad_norm_ceiling;
  } else if (config_.grad_norm_ceiling > 0 && grad_norm > config_.grad_norm_ceiling) {
    why << "grad norm " << grad_norm << " exceeds the ceiling " << config_.grad_norm_ceiling;
    d.absolute = true;
  } else {
    return d;
  }
  d.anomaly = true;
  d.kind = event_kind::kGradExplosion;
  d.reason = why.str() + largest_layer(layer_grad_norms);
  return d;
}

double GradNormExplosionDetector::adaptive_clip_norm() const {
  if (!ready()) return 0.0;
  return std::exp(log_norms_.center() + config_.clip_z_threshold * log_norms_.floored_scale());
}

void GradNormExplosionDetector::learn(int64_t step, double grad_norm) {
  if (step < baseline_start_step(config_) || !(grad_norm > 0) || !std::isfinite(grad_norm)) return;
  log_norms_.push(std::log(grad_norm));
}

void GradNormExplosionDetector::rebuild(const std::vector<double>& grad_norms) {
  log_norms_.clear();
  for (double g : grad_norms) {
    if (g > 0 && std::isfinite(g)) log_norms_.push(std::log(g));
  }
}

// ---- LossSpikeDetector ----

LossSpikeDetector::LossSpikeDetector(const StabilityConfig& config, double uniform_loss)
    : config_(config),
      uniform_loss_(uniform_loss),
      losses_(config.method, static_cast<size_t>(config.window), config.ema_beta),
      fast_alpha_(fast_alpha_for(config)) {}

void LossSpikeDetector::end_stretch() {
  elevated_ = false;
  run_length_ = 0;
  run_start_step_ = -1;
  mid_rise_ = 0;
  corroborated_ = false;
}

Detection LossSpikeDetector::observe(int64_t step, double loss) {
  Detection d = quiet(step, loss);
  const bool step_corroborated = step_corroborated_;
  step_corroborated_ = false;
  if (step_corroborated) last_corroborated_step_ = step;
  fast_ = have_fast_ ? fast_ + fast_alpha_ * (loss - fast_) : loss;
  have_fast_ = true;
  const double worst = uniform_loss_ > 0 && config_.loss_over_uniform > 0 ? uniform_loss_ + config_.loss_over_uniform : 0;
  const bool worse_than_uniform = worst > 0 && loss > worst;
  auto uniform_spike = [&] {
    d.anomaly = true;
    d.absolute = true;
    d.kind = event_kind::kLossSpike;
    d.baseline = uniform_loss_;
    std::ostringstream why;
    why << "loss " << loss << " is worse than guessing uniformly: above ln(vocab) = " << uniform_loss_ << " + "
        << config_.loss_over_uniform;
    d.reason = why.str();
    return d;
  };
  if (!baseline_ready(losses_, config_)) {
    end_stretch();
    return worse_than_uniform ? uniform_spike() : d;
  }
  const double center = losses_.center();
  const double rise = loss - center;
  const double fast_rise = fast_ - center;
  d.baseline = center;
  d.z = losses_.z(loss);

  elevated_ = fast_rise > config_.sustained_margin;
  if (elevated_) {
    if (run_length_ == 0) {
      run_start_step_ = step;
      corroborated_ = false;
      judged_sustained_ = false;
      stretch_.clear();
    }
    ++run_length_;
    stretch_.push_back(loss);
    // A level shift re-seeds the baseline from at most a window of values; a stretch that lasts
    // (observe mode acts on nothing) must not grow without bound.
    if (config_.window > 0 && static_cast<int64_t>(stretch_.size()) > config_.window) stretch_.erase(stretch_.begin());
    if (run_length_ == std::max<int64_t>(1, config_.sustained_steps / 2)) mid_rise_ = fast_rise;
  } else {
    end_stretch();
  }

  std::ostringstream why;
  if (run_length_ >= config_.sustained_steps) {
    // Corroborated: an anomaly during the stretch or just before it (the fast average lags the
    // loss by about its span).
    const int64_t span = std::max<int64_t>(2, config_.sustained_steps / 4);
    corroborated_ = last_corroborated_step_ >= 0 && last_corroborated_step_ >= run_start_step_ - span;
    const bool growing = fast_rise - mid_rise_ > 0.5 * config_.sustained_margin;
    const bool large = fast_rise > config_.level_shift_max_rise;
    if (!(judged_sustained_ || corroborated_ || growing || large)) {
      // A change of level that nothing else confirms: the data changed, not the model. Follow it.
      d.kind = event_kind::kLevelShift;
      d.onset_step = run_start_step_;
      why << "loss level moved from " << center << " to ~" << fast_ << " since step " << run_start_step_
          << " with no gradient, update-ratio or non-finite anomaly and no further growth: the baseline follows";
      d.reason = why.str();
      losses_.rebuild(stretch_);
      end_stretch();
      return d;
    }
    judged_sustained_ = true;
    d.kind = event_kind::kSustainedSpike;
    d.onset_step = run_start_step_;
    why << "loss stayed above baseline " << center << " + margin " << config_.sustained_margin << " for "
        << run_length_ << " consecutive steps (since step " << run_start_step_ << "; now " << loss
        << ", fast average " << fast_ << ", z = " << d.z << "; "
        << (corroborated_ ? "corroborated by another anomaly"
            : growing     ? "still growing"
                          : "larger than level_shift_max_rise")
        << ")";
  } else if (d.z > config_.loss_z_threshold && rise > config_.loss_min_rise &&
             (step_corroborated || (rise > config_.level_shift_max_rise && d.z > 2 * config_.loss_z_threshold))) {
    d.kind = event_kind::kLossSpike;
    why << "loss " << loss << " is " << rise << " above the baseline " << center << " (z = " << d.z
        << " > " << config_.loss_z_threshold << ", rise > " << config_.loss_min_rise << "; "
        << (step_corroborated ? "with a gradient or update anomaly" : "severe") << ")";
  } else if (worse_than_uniform) {
    return uniform_spike();
  } else {
    return d;
  }
  d.anomaly = true;
  d.reason = why.str();
  return d;
}

void LossSpikeDetector::learn(int64_t step, double loss) {
  if (step < baseline_start_step(config_) || !std::isfinite(loss)) return;
  losses_.push(loss);
}

void LossSpikeDetector::rebuild(const std::vector<double>& losses) {
  losses_.clear();
  for (double x : losses) {
    if (std::isfinite(x)) losses_.push(x);
  }
  end_stretch();
  judged_sustained_ = false;
  have_fast_ = false;
  fast_ = 0;
  stretch_.clear();
  // A gradient anomaly of the timeline (or level) left behind must not corroborate what follows.
  step_corroborated_ = false;
  last_corroborated_step_ = -1;
}

nlohmann::json LossSpikeDetector::to_json() const {
  return {{"baseline", losses_.to_json()},
          {"elevated", elevated_},
          {"run_length", run_length_},
          {"run_start_step", run_start_step_},
          {"fast", fast_},
          {"have_fast", have_fast_},
          {"mid_rise", mid_rise_},
          {"corroborated", corroborated_},
          {"step_corroborated", step_corroborated_},
          {"last_corroborated_step", last_corroborated_step_},
          {"judged_sustained", judged_sustained_},
          {"stretch", stretch_}};
}

bool LossSpikeDetector::from_json(const nlohmann::json& j) {
  elevated_ = j.at("elevated").get<bool>();
  run_length_ = j.at("run_length").get<int64_t>();
  run_start_step_ = j.at("run_start_step").get<int64_t>();
  fast_ = j.value("fast", 0.0);
  have_fast_ = j.value("have_fast", false);
  mid_rise_ = j.value("mid_rise", 0.0);
  corroborated_ = j.value("corroborated", false);
  step_corroborated_ = j.value("step_corroborated", false);
  last_corroborated_step_ = j.value("last_corroborated_step", int64_t{-1});
  judged_sustained_ = j.value("judged_sustained", false);
  stretch_ = j.value("stretch", std::vector<double>{});
  return losses_.from_json(j.at("baseline"));
}

// ---- UpdateRatioDetector ----

UpdateRatioDetector::UpdateRatioDetector(const StabilityConfig& config)
    : config_(config),
      log_ratios_(config.method, static_cast<size_t>(config.window), config.ema_beta, kMinLogGradNormScale) {}

Detection UpdateRatioDetector::observe(int64_t step, double update_ratio) const {
  Detection d = quiet(step, update_ratio);
  if (update_ratio == 0) return d;  // not measured (no update applied yet)
  std::ostringstream why;
  const bool ready = baseline_ready(log_ratios_, config_) && update_ratio > 0;
  if (ready) {
    d.baseline = std::exp(log_ratios_.center());
    d.z = log_ratios_.z(std::log(update_ratio));
  }
  if (config_.update_ratio_ceiling > 0 && !(update_ratio <= config_.update_ratio_ceiling)) {  // NaN: an anomaly
    d.baseline = config_.update_ratio_ceiling;
    why << "update/weight ratio " << update_ratio << " exceeds the ceiling " << config_.update_ratio_ceiling;
    d.absolute = true;
  } else if (ready && d.z > config_.grad_z_threshold && update_ratio >= config_.update_ratio_min_factor * d.baseline) {
    why << "update/weight ratio " << update_ratio << " is x" << update_ratio / d.baseline << " its baseline "
        << d.baseline << " (log-space z = " << d.z << "): the effective learning rate jumped";
  } else {
    return d;
  }
  d.anomaly = true;
  d.kind = event_kind::kUpdateRatio;
  d.reason = why.str();
  return d;
}

void UpdateRatioDetector::learn(int64_t step, double update_ratio) {
  if (step < baseline_start_step(config_) || !(update_ratio > 0) || !std::isfinite(update_ratio)) return;
  log_ratios_.push(std::log(update_ratio));
}

void UpdateRatioDetector::rebuild(const std::vector<double>& ratios) {
  log_ratios_.clear();
  for (double r : ratios) {
    if (r > 0 && std::isfinite(r)) log_ratios_.push(std::log(r));
  }
}

}  // namespace keel
