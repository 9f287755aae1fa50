// Stability events serialize their evidence (non-finite values included) and the abort report
// names the evidence and what to try.
#include <gtest/gtest.h>

#include <limits>

#include "stability/stability_event.h"

namespace keel {
namespace {

TEST(StabilityEvent, JsonCarriesEvidenceIncludingNonFinite) {
  StabilityEvent e;
  e.kind = "nonfinite";
  e.step = 12;
  e.action = "skip_update";
  e.loss_window = {3.0, std::numeric_limits<double>::quiet_NaN()};
  e.grad_norm_window = {1.0, std::numeric_limits<double>::infinity()};
  e.reason = "loss is nan";
  nlohmann::json j = nlohmann::json::parse(e.to_json().dump());
  EXPECT_EQ(j.at("kind"), "nonfinite");
  EXPECT_EQ(j.at("step"), 12);
  EXPECT_EQ(j.at("loss_window").at(0), 3.0);
  EXPECT_EQ(j.at("loss_window").at(1), "nan");
  EXPECT_EQ(j.at("grad_norm_window").at(1), "inf");
  EXPECT_EQ(j.at("checkpoint_step"), -1);
}

TEST(StabilityEvent, FormatValuesKeepsTheNewest) {
  EXPECT_EQ(format_values({1, 2, 3}, 5), "[1, 2, 3]");
  EXPECT_EQ(format_values({1, 2, 3, 4}, 2), "[..., 3, 4]");
  EXPECT_EQ(format_values({}, 2), "[]");
}

TEST(AbortReport, NamesEvidenceAndRemedies) {
  AbortReportInput in;
  in.step = 1234;
  in.policy_reason = "a rollback would be number 4";
  Detection d;
  d.kind = "loss_spike";
  d.step = 1234;
  d.onset_step = 1234;
  d.reason = "loss 9 is 3 above the baseline 6";
  in.anomalies = {d};
  in.rollbacks = {{10, 1100, 1098}, {20, 1150, 1149}, {30, 1200, 1199}};
  in.rollbacks_in_window = 3;
  in.max_rollbacks = 3;
  in.rollback_window_steps = 1000;
  in.recent_loss = {6.0, 9.0};
  in.recent_grad_norm = {1.0, 30.0};
  in.last_good_checkpoint = 1000;
  std::string text = abort_report(in);
  for (const char* needle : {"step 1234", "exit code 3", "loss_spike", "baseline 6", "last 1000",
                             "at step 1150 (onset 1149)", "Last good checkpoint: step 1000",
                             "train.lr", "scaled-embed", "embed_scale=sqrt_d"}) {
    EXPECT_NE(text.find(needle), std::string::npos) << needle << "\n" << text;
  }
  EXPECT_NE(text.find("--resume-from 1000"), std::string::npos) << text;
  // A fallback that nothing confirmed yet is not called good.
  in.last_good_confirmed = false;
  const std::string unconfirmed = abort_report(in);
  EXPECT_EQ(unconfirmed.find("Last good checkpoint"), std::string::npos) << unconfirmed;
  EXPECT_NE(unconfirmed.find("No checkpoint is confirmed good yet; the newest with no anomaly after it: step 1000"),
            std::string::npos) << unconfirmed;
  in.action = Action::kRemedyRestart;
  EXPECT_NE(abort_report(in).find("restart from scratch"), std::string::npos);
}

}  // namespace
}  // namespace keel
