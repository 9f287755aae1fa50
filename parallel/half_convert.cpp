// bfloat16 / float16 <-> float32 on raw bits (see half_convert.h).
#include "parallel/half_convert.h"

#include <cstdint>
#include <cstring>

#include "common/check.h"

namespace keel::parallel {
namespace {

float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

uint16_t float_to_bf16(float f) {
  const uint32_t bits = float_to_bits(f);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) return 0x7fc0;  // NaN
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // nearest, ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    if (mantissa == 0) return bits_to_float(sign);
    // Subnormal: value = mantissa * 2^-24.
    const float value = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -value : value;
  }
  if (exponent == 31) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));  // inf / NaN
  return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t float_to_f16(float f) {
  const uint32_t bits = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero): round abs / 2^-24 to nearest even integer.
    const float scaled = bits_to_float(abs) * 16777216.0f;  // exact (power of two)
    uint32_t m = static_cast<uint32_t>(scaled);
    const float rest = scaled - static_cast<float>(m);
    if (rest > 0.5f || (rest == 0.5f && (m & 1u))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
  uint32_t value = abs - (112u << 23);
  value += 0x0fffu + ((value >> 13) & 1u);
  return static_cast<uint16_t>(sign | (value >> 13));
}

}  // namespace

void half_to_float(const void* src, float* dst, size_t count, DataType type) {
  KEEL_CHECK(type == DataType::kBFloat16 || type == DataType::kFloat16, "half_to_float: " << to_string(type));
  const uint16_t* in = static_cast<const uint16_t*>(src);
  if (type == DataType::kBFloat16) {
    for (size_t i = 0; i < count; ++i) dst[i] = bf16_to_float(in[i]);
  } else {
    for (size_t i = 0; i < count; ++i) dst[i] = f16_to_float(in[i]);
  }
}

void float_to_half(const float* src, void* dst, size_t count, DataType type) {
  KEEL_CHECK(type == DataType::kBFloat16 || type == DataType::kFloat16, "float_to_half: " << to_string(type));
  uint16_t* out = static_cast<uint16_t*>(dst);
  if (type == DataType::kBFloat16) {
    for (size_t i = 0; i < count; ++i) out[i] = float_to_bf16(src[i]);
  } else {
    for (size_t i = 0; i < count; ++i) out[i] = float_to_f16(src[i]);
  }
}

}  // namespace keel::parallel
