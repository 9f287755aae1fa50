// Exact JSON encoding of doubles for the monitor's saved state and its events.
//
// nlohmann::json writes finite doubles in shortest round-trip form (so a resumed run sees
// bit-identical values), but writes NaN and infinities as null, which cannot be read back. The
// evidence windows do hold non-finite losses, so they are encoded as the strings "nan", "inf" and
// "-inf" instead. Torch-free, header-only.
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace keel::stability_json {

inline nlohmann::json encode(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}

inline double decode(const nlohmann::json& j) {
  if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    return std::numeric_limits<double>::quiet_NaN();
  }
  return j.get<double>();
}

inline nlohmann::json encode(const std::vector<double>& xs) {
  nlohmann::json a = nlohmann::json::array();
  for (double x : xs) a.push_back(encode(x));
  return a;
}

inline std::vector<double> decode_vector(const nlohmann::json& j) {
  std::vector<double> xs;
  xs.reserve(j.size());
  for (const auto& x : j) xs.push_back(decode(x));
  return xs;
}

}  // namespace keel::stability_json
