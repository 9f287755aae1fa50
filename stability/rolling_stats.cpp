// Rolling window, EMA and robust z-score (see rolling_stats.h).
#include "stability/rolling_stats.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "stability/json_doubles.h"

namespace keel {
namespace {

// Median of `v` (reorders it). Averages the two middle values for an even count.
double median_of(std::vector<double>& v) {
  if (v.empty()) return 0.0;
  size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  double upper = v[mid];
  if (v.size() % 2 == 1) return upper;
  double lower = *std::max_element(v.begin(), v.begin() + mid);
  return 0.5 * (lower + upper);
}

constexpr double kMadToSigma = 1.4826;

}  // namespace

// ---- RollingWindow ----

RollingWindow::RollingWindow(size_t capacity) : buffer_(capacity) {
  KEEL_CHECK(capacity > 0, "RollingWindow capacity must be positive");
}

void RollingWindow::push(double x) {
  buffer_[next_] = x;
  next_ = (next_ + 1) % buffer_.size();
  size_ = std::min(size_ + 1, buffer_.size());
}

void RollingWindow::clear() {
  next_ = 0;
  size_ = 0;
}

std::vector<double> RollingWindow::values() const {
  std::vector<double> out;
  out.reserve(size_);
  size_t start = (next_ + buffer_.size() - size_) % buffer_.size();
  for (size_t i = 0; i < size_; ++i) out.push_back(buffer_[(start + i) % buffer_.size()]);
  return out;
}

double RollingWindow::median() const {
  std::vector<double> v = values();
  return median_of(v);
}

double RollingWindow::mad() const {
  if (size_ == 0) return 0.0;
  std::vector<double> v = values();
  double med = median_of(v);
  for (double& x : v) x = std::fabs(x - med);
  return kMadToSigma * median_of(v);
}

double RollingWindow::mean() const {
  if (size_ == 0) return 0.0;
  double sum = 0;
  for (double x : values()) sum += x;
  return sum / static_cast<double>(size_);
}

// ---- EmaStats ----

EmaStats::EmaStats(double beta) : beta_(beta) {
  KEEL_CHECK(beta > 0 && beta < 1, "EMA beta must be in (0, 1), got " << beta);
}

void EmaStats::push(double x) {
  m_ = beta_ * m_ + (1 - beta_) * x;
  q_ = beta_ * q_ + (1 - beta_) * x * x;
  weight_ = beta_ * weight_ + (1 - beta_);
  ++count_;
}

void EmaStats::clear() {
  m_ = q_ = weight_ = 0;
  count_ = 0;
}

double EmaStats::mean() const { return count_ == 0 ? 0.0 : m_ / weight_; }

double EmaStats::variance() const {
  if (count_ == 0) return 0.0;
  double mean = m_ / weight_;
  return std::max(0.0, q_ / weight_ - mean * mean);
}

double EmaStats::stddev() const { return std::sqrt(variance()); }

nlohmann::json EmaStats::to_json() const {
  using stability_json::encode;
  return {{"m", encode(m_)}, {"q", encode(q_)}, {"weight", encode(weight_)}, {"count", count_}};
}

void EmaStats::from_json(const nlohmann::json& j) {
  using stability_json::decode;
  m_ = decode(j.at("m"));
  q_ = decode(j.at("q"));
  weight_ = decode(j.at("weight"));
  count_ = j.at("count").get<int64_t>();
}

// ---- RobustZScore ----

RobustZScore::RobustZScore(const std::string& method_name, size_t window, double ema_beta,
                           double min_scale)
    : method_(method_name == "ema" ? Method::kEma : Method::kMedianMad),
      min_scale_(min_scale),
      window_(window),
      ema_(ema_beta) {
  KEEL_CHECK(method_name == "ema" || method_name == "median_mad",
             "unknown baseline method '" << method_name << "'");
}

void RobustZScore::push(double x) {
  if (method_ == Method::kEma) {
    ema_.push(x);
  } else {
    window_.push(x);
  }
}

void RobustZScore::clear() {
  window_.clear();
  ema_.clear();
}

void RobustZScore::rebuild(const std::vector<double>& values) {
  clear();
  for (double x : values) push(x);
}

int64_t RobustZScore::count() const {
  return method_ == Method::kEma ? ema_.count() : static_cast<int64_t>(window_.size());
}

double RobustZScore::center() const {
  return method_ == Method::kEma ? ema_.mean() : window_.median();
}

double RobustZScore::scale() const {
  return method_ == Method::kEma ? ema_.stddev() : window_.mad();
}

double RobustZScore::floored_scale() const {
  double floor = std::max(min_scale_, 1e-8 + 1e-3 * std::fabs(center()));
  return std::max(scale(), floor);
}

double RobustZScore::z(double x) const { return (x - center()) / floored_scale(); }

nlohmann::json RobustZScore::to_json() const {
  return {{"method", method_ == Method::kEma ? "ema" : "median_mad"},
          {"window", stability_json::encode(window_.values())},
          {"ema", ema_.to_json()}};
}

bool RobustZScore::from_json(const nlohmann::json& j) {
  std::string method = j.at("method").get<std::string>();
  if (method != (method_ == Method::kEma ? "ema" : "median_mad")) return false;
  window_.clear();
  for (double x : stability_json::decode_vector(j.at("window"))) window_.push(x);
  ema_.from_json(j.at("ema"));
  return true;
}

}  // namespace keel
