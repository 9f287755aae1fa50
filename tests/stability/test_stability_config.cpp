// The stability and debug config sections: defaults validate, every bad value names its key, the
// sections work with the generic YAML reader, and fault injection describes itself loudly.
#include <gtest/gtest.h>

#include <functional>

#include "common/config.h"
#include "stability/stability_config.h"

namespace keel {
namespace {

// Expects validate() to throw a ConfigError whose message names `key`.
template <typename Section>
void expect_rejected(const Section& section, const std::string& key) {
  try {
    section.validate();
    ADD_FAILURE() << "no error for " << key;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

TEST(StabilityConfig, DefaultsAreValid) {
  StabilityConfig c;
  EXPECT_NO_THROW(c.validate());
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.method, "median_mad");
  EXPECT_EQ(c.on_repeated_spikes, "abort");
  EXPECT_EQ(c.max_rollbacks, 3);
  EXPECT_EQ(c.skip_batches_after_rollback, -1);
  DebugConfig d;
  EXPECT_NO_THROW(d.validate());
}

TEST(StabilityConfig, BadValuesNameTheirKey) {
  const std::vector<std::pair<std::string, std::function<void(StabilityConfig&)>>> cases = {
      {"stability.warmup_steps", [](StabilityConfig& c) { c.warmup_steps = -1; }},
      {"stability.window", [](StabilityConfig& c) { c.window = 2; }},
      {"stability.method", [](StabilityConfig& c) { c.method = "mean"; }},
      {"stability.ema_beta", [](StabilityConfig& c) { c.ema_beta = 1.0; }},
      {"stability.grad_z_threshold", [](StabilityConfig& c) { c.grad_z_threshold = 0; }},
      {"stability.grad_norm_ceiling", [](StabilityConfig& c) { c.grad_norm_ceiling = -1; }},
      {"stability.loss_z_threshold", [](StabilityConfig& c) { c.loss_z_threshold = -2; }},
      {"stability.loss_min_rise", [](StabilityConfig& c) { c.loss_min_rise = -0.1; }},
      {"stability.sustained_steps", [](StabilityConfig& c) { c.sustained_steps = 0; }},
      {"stability.sustained_margin", [](StabilityConfig& c) { c.sustained_margin = 0; }},
      {"stability.suspect_clip_scale", [](StabilityConfig& c) { c.suspect_clip_scale = 1.5; }},
      {"stability.suspect_steps_to_rollback", [](StabilityConfig& c) { c.suspect_steps_to_rollback = 0; }},
      {"stability.suspect_recover_steps", [](StabilityConfig& c) { c.suspect_recover_steps = 0; }},
      {"stability.skip_batches_after_rollback", [](StabilityConfig& c) { c.skip_batches_after_rollback = -2; }},
      {"stability.lr_cooldown_steps", [](StabilityConfig& c) { c.lr_cooldown_steps = -1; }},
      {"stability.lr_cooldown_factor", [](StabilityConfig& c) { c.lr_cooldown_factor = 0; }},
      {"stability.max_rollbacks", [](StabilityConfig& c) { c.max_rollbacks = -1; }},
      {"stability.rollback_window_steps", [](StabilityConfig& c) { c.rollback_window_steps = 0; }},
      {"stability.on_repeated_spikes", [](StabilityConfig& c) { c.on_repeated_spikes = "retry"; }},
      {"stability.remedy_restart_before_step", [](StabilityConfig& c) { c.remedy_restart_before_step = -5; }},
      {"stability.guard_steps", [](StabilityConfig& c) { c.guard_steps = 20; }},  // <= sustained_steps
      {"stability.update_ratio_ceiling", [](StabilityConfig& c) { c.update_ratio_ceiling = -1; }},
      {"stability.mode", [](StabilityConfig& c) { c.mode = "panic"; }},
      {"stability.window_tokens", [](StabilityConfig& c) { c.window_tokens = -1; }},
      {"stability.sustained_tokens", [](StabilityConfig& c) { c.sustained_tokens = -1; }},
      {"stability.loss_over_uniform", [](StabilityConfig& c) { c.loss_over_uniform = -1; }},
      {"stability.level_shift_max_rise", [](StabilityConfig& c) { c.level_shift_max_rise = 0.1; }},
      {"stability.update_ratio_min_factor", [](StabilityConfig& c) { c.update_ratio_min_factor = 0.5; }},
      {"stability.lr_backoff", [](StabilityConfig& c) { c.lr_backoff = 0; }},
      {"stability.lr_backoff", [](StabilityConfig& c) { c.lr_backoff = 1.5; }},
      {"stability.flat_after_tokens", [](StabilityConfig& c) { c.flat_after_tokens = -1; }},
      {"stability.stall_tokens", [](StabilityConfig& c) { c.stall_tokens = -1; }},
      {"stability.stall_min_drop", [](StabilityConfig& c) { c.stall_min_drop = -0.1; }},
      {"stability.val_rise_evals", [](StabilityConfig& c) { c.val_rise_evals = 1; }},
      {"stability.on_flat", [](StabilityConfig& c) { c.on_flat = "ignore"; }},
      {"stability.clip_z_threshold", [](StabilityConfig& c) { c.clip_z_threshold = 0; }},
  };
  for (const auto& [key, breaks] : cases) {
    StabilityConfig c;
    breaks(c);
    expect_rejected(c, key);
  }
}

TEST(StabilityConfig, TokenKeysResolveToStepsForTheRunsBatch) {
  StabilityConfig c;  // window_tokens 102400, sustained_tokens 20480
  StabilityConfig unknown = c.resolved(0);
  EXPECT_EQ(unknown.window, c.window);
  EXPECT_EQ(unknown.sustained_steps, c.sustained_steps);
  StabilityConfig small = c.resolved(1024);  // the small CPU recipes: 100 and 20 steps
  EXPECT_EQ(small.window, 100);
  EXPECT_EQ(small.sustained_steps, 20);
  StabilityConfig tiny = c.resolved(256);  // 400 and 80 steps; guard raised past the stretch
  EXPECT_EQ(tiny.window, 400);
  EXPECT_EQ(tiny.sustained_steps, 80);
  EXPECT_EQ(tiny.guard_steps, 81);
  StabilityConfig gpu = c.resolved(32 * 1024);  // large batches: the floors
  EXPECT_EQ(gpu.window, kMinWindowSteps);
  EXPECT_EQ(gpu.sustained_steps, kMinSustainedSteps);
  c.window_tokens = 0;  // 0 = the step keys
  c.sustained_tokens = 0;
  EXPECT_EQ(c.resolved(32 * 1024).window, 100);
  EXPECT_EQ(c.resolved(32 * 1024).sustained_steps, 20);
}

TEST(StabilityConfig, WorksWithTheYamlReader) {
  StabilityConfig s;
  DebugConfig d;
  std::vector<ConfigSectionRef> sections = {{"stability", [&](ConfigVisitor& v) { s.visit(v); }},
                                            {"debug", [&](ConfigVisitor& v) { d.visit(v); }}};
  apply_yaml_text(sections, "stability:\n  method: ema\n  window: 64\ndebug:\n  inject_nan_grad_at: 7\n",
                  "t.yaml");
  EXPECT_EQ(s.method, "ema");
  EXPECT_EQ(s.window, 64);
  EXPECT_EQ(d.inject_nan_grad_at, 7);
  EXPECT_THROW(apply_override(sections, "stability.method=mean"), ConfigError);
  EXPECT_THROW(apply_override(sections, "stability.on_repeated_spikes=retry"), ConfigError);
  apply_override(sections, "stability.on_repeated_spikes=remedy_restart");
  EXPECT_EQ(s.on_repeated_spikes, "remedy_restart");
  auto flat = flatten(sections);
  EXPECT_EQ(flat.count("stability.guard_steps"), 1u);
  EXPECT_EQ(flat.count("debug.inject_lr_spike_factor"), 1u);
}

TEST(DebugConfig, InjectionsAreLoudAndQueryable) {
  DebugConfig d;
  EXPECT_FALSE(d.any_enabled());
  EXPECT_EQ(d.describe(), "");
  EXPECT_FALSE(d.nan_grad_at(0));
  EXPECT_DOUBLE_EQ(d.lr_factor_at(0), 1.0);

  d.inject_lr_spike_at = 100;
  d.inject_bad_batch_at = 42;
  EXPECT_TRUE(d.any_enabled());
  std::string text = d.describe();
  EXPECT_NE(text.find("FAULT INJECTION"), std::string::npos) << text;
  EXPECT_NE(text.find("LR x100"), std::string::npos) << text;
  EXPECT_NE(text.find("step 42"), std::string::npos) << text;
  EXPECT_EQ(text.find("NaN"), std::string::npos) << text;
  EXPECT_DOUBLE_EQ(d.lr_factor_at(99), 1.0);
  EXPECT_DOUBLE_EQ(d.lr_factor_at(100), 100.0);
  EXPECT_DOUBLE_EQ(d.lr_factor_at(104), 100.0);
  EXPECT_DOUBLE_EQ(d.lr_factor_at(105), 1.0);
  EXPECT_TRUE(d.bad_batch_at(42));

  d.inject_lr_spike_steps = 0;
  expect_rejected(d, "debug.inject_lr_spike_steps");
  DebugConfig bad;
  bad.inject_nan_grad_at = -3;
  expect_rejected(bad, "debug.inject_nan_grad_at");
}

}  // namespace
}  // namespace keel
