// SUPRA linear attention: parallel, recurrent and chunk forms (see linear_attention.h).
#include "model/linear_attention.h"

#include <cmath>

#include "common/check.h"

namespace keel {
namespace {

// log(gamma_h) of heads first_head .. first_head + num_heads - 1: gamma_h = exp(-m_h) with ALiBi's
// slopes m_h = 2^(-8 (h + 1) / H), i.e. log(gamma_h) = -m_h. (H) fp32.
torch::Tensor log_decay(int64_t first_head, int64_t num_heads, int64_t total_heads, torch::Device device) {
  auto h = torch::arange(first_head, first_head + num_heads, torch::TensorOptions().dtype(torch::kDouble));
  auto slopes = torch::pow(2.0, -8.0 * (h + 1.0) / static_cast<double>(total_heads));
  return (-slopes).to(torch::kFloat).to(device);
}

// Decay weights gamma_h^(t-s) for s <= t, else 0. (H, T, T) fp32.
torch::Tensor decay_mask(const torch::Tensor& log_gamma, int64_t T) {
  auto pos = torch::arange(T, log_gamma.options());
  auto diff = pos.view({T, 1}) - pos.view({1, T});  // (T, T): t - s
  auto weights = torch::exp(diff.clamp_min(0).unsqueeze(0) * log_gamma.view({-1, 1, 1}));
  return weights * (diff >= 0).to(torch::kFloat).unsqueeze(0);
}

}  // namespace

torch::Tensor apply_rotary(const torch::Tensor& x, int64_t start_pos) {
  const int64_t T = x.size(-2), D = x.size(-1), half = D / 2;
  KEEL_CHECK(D % 2 == 0, "rotary positions need an even head dimension, got " << D);
  auto options = torch::TensorOptions().dtype(torch::kFloat).device(x.device());
  auto inv_freq = torch::pow(10000.0, -torch::arange(half, options) * 2.0 / static_cast<double>(D));  // (D/2)
  auto angles = torch::arange(start_pos, start_pos + T, options).unsqueeze(1) * inv_freq.unsqueeze(0);  // (T, D/2)
  auto cos = angles.cos(), sin = angles.sin();
  auto xf = x.to(torch::kFloat);
  auto x1 = xf.narrow(-1, 0, half), x2 = xf.narrow(-1, half, half);
  return torch::cat({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1);
}

LinearAttentionImpl::LinearAttentionImpl(int64_t num_heads, int64_t head_dim, int64_t first_head, int64_t total_heads)
    : num_heads_(num_heads), head_dim_(head_dim), first_head_(first_head), total_heads_(total_heads) {
  phi_weight = register_parameter("phi_weight", torch::empty({num_heads, head_dim, head_dim}));
  phi_bias = register_parameter("phi_bias", torch::empty({num_heads, head_dim}));
  norm_weight = register_parameter("norm_weight", torch::empty({num_heads * head_dim}));
  norm_bias = register_parameter("norm_bias", torch::empty({num_heads * head_dim}));
  reset_parameters();
}

void LinearAttentionImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  phi_weight.copy_(torch::eye(head_dim_).expand({num_heads_, head_dim_, head_dim_}));
  phi_bias.zero_();
  norm_weight.fill_(1.0);
  norm_bias.zero_();
}

torch::Tensor LinearAttentionImpl::decay() const {
  return log_gamma(phi_weight.device()).exp();
}

const torch::Tensor& LinearAttentionImpl::log_gamma(const torch::Device& device) const {
  // Built on the host; cached per device so that decoding (one call per token and layer) does not
  // pay a host-to-device copy, which waits for the device, every time.
  if (!log_gamma_.defined() || log_gamma_.device() != device)
    log_gamma_ = log_decay(first_head_, num_heads_, total_heads_, device);
  return log_gamma_;
}

torch::Tensor LinearAttentionImpl::features(const torch::Tensor& x, int64_t start_pos) const {
  // phi(x)_h = ReLU(x W_h^T + b_h): (B, H, T, D) @ (1, H, D, D) -> (B, H, T, D)
  auto projected = torch::matmul(x, phi_weight.transpose(1, 2).unsqueeze(0)) + phi_bias.view({1, num_heads_, 1, head_dim_});
  return apply_rotary(torch::relu(projected), start_pos);
}

torch::Tensor LinearAttentionImpl::normalise(const torch::Tensor& y) const {
  const auto B = y.size(0), T = y.size(2);
  auto flat = y.transpose(1, 2).reshape({B * T, num_heads_ * head_dim_});  // (B*T, H*D)
  return torch::group_norm(flat, num_heads_, norm_weight, norm_bias, 1e-5).view({B, T, num_heads_ * head_dim_});
}

torch::Tensor LinearAttentionImpl::forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           int64_t start_pos) {
  const int64_t T = q.size(2);
  auto qf = features(q, start_pos);                                                        // (B, H, T, D)
  auto kf = features(k, start_pos) / std::sqrt(static_cast<double>(head_dim_));             // (B, H, T, D)
  auto scores = torch::matmul(qf, kf.transpose(-2, -1));                                    // (B, H, T, T)
  auto weights = scores.to(torch::kFloat) * decay_mask(log_gamma(q.device()), T);
  return normalise(torch::matmul(weights, v.to(torch::kFloat)));                            // (B, T, H*D)
}

torch::Tensor LinearAttentionImpl::attention_weights(const torch::Tensor& q, const torch::Tensor& k) {
  const int64_t T = q.size(2);
  auto scores = torch::matmul(features(q, 0), features(k, 0).transpose(-2, -1)).to(torch::kFloat);
  auto weights = (scores * decay_mask(log_gamma(q.device()), T)).abs();
  return weights / weights.sum(-1, /*keepdim=*/true).clamp_min(1e-12);  // (B, H, T, T)
}

torch::Tensor LinearAttentionImpl::forward_recurrent(const torch::Tensor& q, const torch::Tensor& k,
                                                     const torch::Tensor& v, int64_t start_pos, torch::Tensor& state) {
  const int64_t B = q.size(0), T = q.size(2);
  auto qf = features(q, start_pos);                                             // (B, H, T, D)
  auto kf = features(k, start_pos) / std::sqrt(static_cast<double>(head_dim_));  // (B, H, T, D)
  auto vf = v.to(torch::kFloat);                                                // (B, H, T, D)
  const auto& log_gamma = this->log_gamma(q.device());  // (H)
  if (!state.defined())
    state = torch::zeros({B, num_heads_, head_dim_, head_dim_}, qf.options());
  const auto gamma = log_gamma.exp().view({1, num_heads_, 1, 1});
  torch::Tensor y;  // (B, H, T, D)
  if (T == 1) {
    // S_t = gamma S_(t-1) + k_t^T v_t;  y_t = q_t S_t
    state = gamma * state + torch::matmul(kf.transpose(-2, -1), vf).to(torch::kFloat);
    y = torch::matmul(qf, state).to(torch::kFloat);
  } else {
    // One chunk: y_j = sum_(s<=j) gamma^(j-s) q_j.k_s v_s + gamma^(j+1) q_j S_prev
    //            S   = gamma^T S_prev + sum_s gamma^(T-1-s) k_s^T v_s
    auto j = torch::arange(T, log_gamma.options());
    auto intra = torch::matmul(torch::matmul(qf, kf.transpose(-2, -1)).to(torch::kFloat) * decay_mask(log_gamma, T), vf);
    auto carry = torch::exp((j + 1).view({1, 1, T, 1}) * log_gamma.view({1, num_heads_, 1, 1}));  // (1, H, T, 1)
    y = intra + torch::matmul(qf, state).to(torch::kFloat) * carry;
    auto key_weights = torch::exp((T - 1 - j).view({1, 1, T, 1}) * log_gamma.view({1, num_heads_, 1, 1}));
    state = torch::exp(static_cast<double>(T) * log_gamma).view({1, num_heads_, 1, 1}) * state +
            torch::matmul((kf * key_weights).transpose(-2, -1), vf).to(torch::kFloat);
  }
  return normalise(y);
}

}  // namespace keel
