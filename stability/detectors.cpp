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

}  // namespace

int64_t baseline_start_step(const StabilityConfig& config) { return config.warmup_steps / 5; }

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
    d.kind = "nonfinite";
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

Detection GradNormExplosionDetector::observe(int64_t step, double grad_norm,
                                             const std::vector<double>& layer_grad_norms) const {
  Detection d = quiet(step, grad_norm);
  if (step < config_.warmup_steps) return d;
  bool have_baseline = baseline_ready(log_norms_, config_);
  if (have_baseline) {
    d.baseline = std::exp(log_norms_.center());
    d.z = grad_norm > 0 ? log_norms_.z(std::log(grad_norm)) : -INFINITY;
  }
  std::ostringstream why;
  if (have_baseline && d.z > config_.grad_z_threshold && grad_norm >= config_.grad_min_factor * d.baseline) {
    why << "grad norm " << grad_norm << " is x" << grad_norm / d.baseline << " the baseline "
        << d.baseline << " (log-space z = " << d.z << " > " << config_.grad_z_threshold << ")";
  } else if (config_.grad_norm_ceiling > 0 && grad_norm > config_.grad_norm_ceiling) {
    why << "grad norm " << grad_norm << " exceeds the ceiling " << config_.grad_norm_ceiling;
  } else {
    return d;
  }
  d.anomaly = true;
  d.kind = "grad_explosion";
  d.reason = why.str() + largest_layer(layer_grad_norms);
  return d;
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

LossSpikeDetector::LossSpikeDetector(const StabilityConfig& config)
    : config_(config), losses_(config.method, static_cast<size_t>(config.window), config.ema_beta) {}

Detection LossSpikeDetector::observe(int64_t step, double loss) {
  Detection d = quiet(step, loss);
  if (step < config_.warmup_steps || !baseline_ready(losses_, config_)) {
    elevated_ = false;
    run_length_ = 0;
    return d;
  }
  double center = losses_.center();
  double rise = loss - center;
  d.baseline = center;
  d.z = losses_.z(loss);

  elevated_ = rise > config_.sustained_margin;
  if (elevated_) {
    if (run_length_ == 0) run_start_step_ = step;
    ++run_length_;
  } else {
    run_length_ = 0;
  }

  std::ostringstream why;
  if (run_length_ >= config_.sustained_steps) {
    d.kind = "sustained_spike";
    d.onset_step = run_start_step_;
    why << "loss stayed above baseline " << center << " + margin " << config_.sustained_margin
        << " for " << run_length_ << " consecutive steps (since step " << run_start_step_
        << "; now " << loss << ", z = " << d.z << ")";
  } else if (d.z > config_.loss_z_threshold && rise > config_.loss_min_rise) {
    d.kind = "loss_spike";
    why << "loss " << loss << " is " << rise << " above the baseline " << center << " (z = " << d.z
        << " > " << config_.loss_z_threshold << ", rise > " << config_.loss_min_rise << ")";
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
  elevated_ = false;
  run_length_ = 0;
  run_start_step_ = -1;
}

nlohmann::json LossSpikeDetector::to_json() const {
  return {{"baseline", losses_.to_json()},
          {"elevated", elevated_},
          {"run_length", run_length_},
          {"run_start_step", run_start_step_}};
}

bool LossSpikeDetector::from_json(const nlohmann::json& j) {
  elevated_ = j.at("elevated").get<bool>();
  run_length_ = j.at("run_length").get<int64_t>();
  run_start_step_ = j.at("run_start_step").get<int64_t>();
  return losses_.from_json(j.at("baseline"));
}

// ---- UpdateRatioDetector ----

Detection UpdateRatioDetector::observe(int64_t step, double update_ratio) const {
  Detection d = quiet(step, update_ratio);
  if (config_.update_ratio_ceiling <= 0 || step < config_.warmup_steps) return d;
  d.baseline = config_.update_ratio_ceiling;
  if (update_ratio <= config_.update_ratio_ceiling) return d;  // NaN falls through: an anomaly
  d.anomaly = true;
  d.kind = "update_ratio";
  std::ostringstream why;
  why << "update/weight ratio " << update_ratio << " exceeds the ceiling "
      << config_.update_ratio_ceiling;
  d.reason = why.str();
  return d;
}

}  // namespace keel
