// A handmade run directory shaped like a real rollback (issue 27 item 3): steps 0..9, a spike at
// step 6 seen by three detectors at once (three events, one rollback to checkpoint 4), its record
// carrying rollback_to, then steps 4..9 replayed; warm-up marks as the trainer writes them (the
// first 3 steps of the start and of the stretch after the rollback).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "tests/registry/registry_test_util.h"

namespace keel::registry::testing {

inline void write_rollback_run(const std::string& dir) {
  std::string metrics;
  auto step = [&](int s, double loss, double tokens_per_second, bool warmup) {
    nlohmann::json m = {{"step", s}, {"loss", loss}, {"grad_norm", 1.0}, {"lr", 1e-3},
                        {"tokens_per_second", tokens_per_second}, {"step_time", 0.25}};
    if (warmup) m["warmup"] = true;
    metrics += m.dump() + "\n";
  };
  for (int s = 0; s < 6; ++s) step(s, 5.0 - 0.1 * s, s < 3 ? 100.0 : 1000.0, s < 3);
  metrics += nlohmann::json{{"step", 6}, {"loss", 9.0}, {"grad_norm", 30.0}, {"lr", 1e-3}, {"rollback_to", 4},
                            {"events", {"grad_explosion", "loss_spike", "update_ratio"}}}
                 .dump() +
             "\n";
  for (int s = 4; s < 10; ++s) step(s, 4.6 - 0.1 * (s - 4), s < 7 ? 100.0 : 2000.0, s < 7);
  write(dir + "/metrics.jsonl", metrics);
  std::string events;
  for (const char* kind : {"grad_explosion", "loss_spike", "update_ratio"})
    events += nlohmann::json{{"kind", kind}, {"step", 6}, {"action", "rollback"}, {"reason", "test"},
                             {"checkpoint_step", 4}}
                  .dump() +
              "\n";
  write(dir + "/events.jsonl", events);
  write(dir + "/config.yaml", "train:\n  steps: 10\ndiagnostics:\n  every: 100\n");
  write(dir + "/run_info.json", nlohmann::json{{"status", "completed"}, {"final_step", 10},
                                               {"tokens_per_second", 0.0}}.dump());
}

}  // namespace keel::registry::testing
