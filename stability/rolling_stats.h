// Baseline statistics for the stability detectors: a fixed-capacity rolling window (median, MAD,
// mean), a bias-corrected EMA of mean and variance, and RobustZScore, which wraps either one
// behind a single z(x) so the detectors do not care which method the config chose.
//
// Only healthy values are pushed (the caller decides), so a spike never poisons its own baseline.
// Everything is deterministic and serializable: a resumed run must reach identical verdicts.
// Torch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace keel {

// A ring buffer of the last `capacity` doubles.
class RollingWindow {
 public:
  explicit RollingWindow(size_t capacity);

  void push(double x);  // evicts the oldest value when full
  void clear();
  size_t size() const { return size_; }
  size_t capacity() const { return buffer_.size(); }
  bool empty() const { return size_ == 0; }

  // Statistics of the current contents; all return 0 when empty.
  double median() const;
  // Median absolute deviation from the median, times 1.4826 so that it estimates the standard
  // deviation of normally distributed values.
  double mad() const;
  double mean() const;

  std::vector<double> values() const;  // oldest .. newest

 private:
  std::vector<double> buffer_;
  size_t next_ = 0;  // slot the next push writes
  size_t size_ = 0;
};

// Exponential moving mean and variance with bias correction (as in Adam): with weights
// w_i = (1-beta) beta^(t-i) normalized by their sum 1 - beta^t,
//   mean = sum w_i x_i / (1 - beta^t),  variance = sum w_i x_i^2 / (1 - beta^t) - mean^2.
class EmaStats {
 public:
  explicit EmaStats(double beta);

  void push(double x);
  void clear();
  int64_t count() const { return count_; }
  double mean() const;      // 0 when empty
  double variance() const;  // >= 0; 0 when empty
  double stddev() const;

  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& j);

 private:
  double beta_;
  double m_ = 0;       // sum w_i x_i
  double q_ = 0;       // sum w_i x_i^2
  double weight_ = 0;  // sum w_i = 1 - beta^t, tracked exactly as the same recursion
  int64_t count_ = 0;
};

// z(x) = (x - center) / max(scale, floor): center/scale are the median/MAD or the EMA
// mean/stddev; floor = max(min_scale, 1e-8 + 1e-3 * |center|) guards a zero scale.
class RobustZScore {
 public:
  enum class Method { kMedianMad, kEma };
  // method_name: "median_mad" or "ema" (as in StabilityConfig::method).
  RobustZScore(const std::string& method_name, size_t window, double ema_beta, double min_scale = 0);

  void push(double x);
  void clear();
  // Replaces the contents with `values` (oldest first), as if cleared and pushed one by one.
  void rebuild(const std::vector<double>& values);
  int64_t count() const;  // values currently contributing (window size, or EMA pushes)

  double center() const;  // the baseline
  double scale() const;   // MAD or EMA stddev, before the floor
  double floored_scale() const;
  double z(double x) const;

  Method method() const { return method_; }
  nlohmann::json to_json() const;
  // Returns false (and changes nothing) when the state was saved with the other method; the
  // caller then rebuilds from its own history of healthy values.
  bool from_json(const nlohmann::json& j);

 private:
  Method method_;
  double min_scale_;
  RollingWindow window_;
  EmaStats ema_;
};

}  // namespace keel
