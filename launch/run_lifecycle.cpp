// run_info.json, the registry import and worker_result.json (see run_lifecycle.h).
#include "launch/run_lifecycle.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <ctime>
#include <filesystem>
#include <limits>

#include "common/exit_codes.h"
#include "common/fs.h"
#include "registry/run_registry.h"

namespace keel::launch {
namespace {

nlohmann::json running_info(const std::string& run_dir, const std::string& recipe, const nlohmann::json& parent) {
  return {{"run_dir", run_dir}, {"recipe", recipe}, {"parent", parent},
          {"status", "running"}, {"started_unix", std::time(nullptr)}};
}

// The status of a run that ended with `result` (a remedy restart is recorded before, not here).
std::string status_of(const TrainResult& result, bool finished) {
  if (result.exit_code == kExitStabilityAbort) return "aborted";
  if (result.exit_code == kExitPreempted) return "preempted";
  if (result.exit_code == kExitInterrupted) return "interrupted";
  if (result.exit_code != kExitOk) return "failed";  // a distributed job that was not (or no longer) restarted
  return finished ? "completed" : "stopped";
}

}  // namespace

RunLifecycle::RunLifecycle(const RunConfig& config, std::string run_dir)
    : runs_root_(config.run.runs_root), planned_steps_(config.train.steps), run_dir_(std::move(run_dir)) {
  info_ = running_info(run_dir_, config.run.recipe, nullptr);
  if (!config.train.init_from.empty()) {
    // keel uptrain: the parent is the run that wrote the starting checkpoint (RUN/checkpoints/step_N).
    info_["parent"] = std::filesystem::path(config.train.init_from).parent_path().parent_path().string();
    info_["init_from"] = config.train.init_from;
  }
  write();
  start_ = std::chrono::steady_clock::now();
}

void RunLifecycle::end_for_remedy_restart(const std::string& message) {
  const std::lock_guard<std::mutex> lock(mutex_);
  info_["status"] = "remedy_restart";
  info_["message"] = message;
  write();
  import_into_registry();
}

void RunLifecycle::continue_as_remedy_child(const std::string& child_recipe) {
  const std::lock_guard<std::mutex> lock(mutex_);
  const std::string parent = run_dir_;
  run_dir_ = remedy_child_dir();
  fs::make_dirs(run_dir_);
  info_ = running_info(run_dir_, child_recipe, parent);
  write();
}

RunEnd RunLifecycle::finish(const TrainResult& result) {
  const std::lock_guard<std::mutex> lock(mutex_);
  RunEnd end;
  end.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  end.finished = result.final_step >= planned_steps_;
  end.status = status_of(result, end.finished);
  info_["ended_unix"] = std::time(nullptr);
  info_["exit_code"] = result.exit_code;
  info_["final_step"] = result.final_step;
  info_["wall_seconds"] = end.wall_seconds;
  if (!std::isnan(result.final_val_loss)) info_["final_val_loss"] = result.final_val_loss;
  // The whole run's throughput (every process and resume of it) from metrics.jsonl, by the same
  // definition `keel runs` and `keel compare` use; the worker's own figure covers its process only.
  end.tokens_per_second = run_tokens_per_second();
  info_["tokens_per_second"] = end.tokens_per_second;  // NaN: null
  info_["peak_device_memory_bytes"] = result.peak_device_memory_bytes;
  // Rank 0's (the largest share when the optimizer is sharded over DP).
  info_["optimizer_state_bytes_per_rank"] = result.optimizer_state_bytes;
  info_["status"] = end.status;
  if (end.status == "aborted" || end.status == "preempted" || end.status == "interrupted")
    info_["message"] = result.message;
  if (end.status == "failed") info_["message"] = "job failed with exit code " + std::to_string(result.exit_code);
  write();
  import_into_registry();
  return end;
}

void RunLifecycle::fail(const std::string& error, int exit_code) {
  const std::lock_guard<std::mutex> lock(mutex_);
  end("failed", error, exit_code);
}

void RunLifecycle::interrupt_now(const std::string& message) {
  const std::lock_guard<std::mutex> lock(mutex_);
  end("interrupted", message, kExitInterrupted);
}

void RunLifecycle::end(const std::string& status, const std::string& message, int exit_code) {
  info_["ended_unix"] = std::time(nullptr);
  info_["exit_code"] = exit_code;
  info_["wall_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  info_["status"] = status;
  info_["message"] = message;
  write();
  import_into_registry();
}

double RunLifecycle::run_tokens_per_second() const {
  try {
    return registry::read_run_dir(run_dir_).info.tokens_per_second;
  } catch (const std::exception& e) {
    spdlog::warn("throughput: could not read {}: {}", run_dir_, e.what());
    return std::numeric_limits<double>::quiet_NaN();
  }
}

void RunLifecycle::write() const { fs::write_file_atomic(run_dir_ + "/run_info.json", info_.dump(2) + "\n"); }

// After the run, never on the step path: config, events and downsampled metrics into the registry
// under the runs root.
void RunLifecycle::import_into_registry() const {
  try {
    fs::make_dirs(runs_root_);
    registry::RunRegistry(runs_root_ + "/registry.sqlite").import_run_dir(run_dir_);
  } catch (const std::exception& e) {
    spdlog::warn("run registry: could not record {}: {}", run_dir_, e.what());
  }
}

std::optional<int64_t> completed_step(const std::string& run_dir) {
  const std::string path = run_dir + "/run_info.json";
  if (!fs::exists(path)) return std::nullopt;
  const auto json = nlohmann::json::parse(fs::read_file(path), nullptr, false);
  if (json.is_discarded() || !json.is_object() || json.value("status", std::string()) != "completed" ||
      !json.contains("final_step") || !json["final_step"].is_number_integer())
    return std::nullopt;
  return json["final_step"].get<int64_t>();
}

std::string worker_result_path(const std::string& run_dir) { return run_dir + "/worker_result.json"; }

void write_worker_result(const std::string& run_dir, const TrainResult& result, int exit_code) {
  nlohmann::json summary = {{"exit_code", exit_code},
                            {"final_step", result.final_step},
                            {"mean_tokens_per_second", result.mean_tokens_per_second},
                            {"peak_device_memory_bytes", result.peak_device_memory_bytes},
                            {"optimizer_state_bytes", result.optimizer_state_bytes},
                            {"message", result.message},
                            {"lr_scale", result.lr_scale}};
  if (!std::isnan(result.final_val_loss)) summary["final_val_loss"] = result.final_val_loss;
  fs::write_file_atomic(worker_result_path(run_dir), summary.dump(2) + "\n");
}

TrainResult read_worker_result(const std::string& run_dir, int exit_code) {
  TrainResult result;
  result.exit_code = exit_code;
  result.final_val_loss = std::numeric_limits<double>::quiet_NaN();
  const std::string path = worker_result_path(run_dir);
  if (!fs::exists(path)) return result;
  auto json = nlohmann::json::parse(fs::read_file(path), nullptr, false);
  if (json.is_discarded()) return result;
  result.final_step = json.value("final_step", int64_t{0});
  if (json.contains("mean_tokens_per_second") && json["mean_tokens_per_second"].is_number())  // NaN: null
    result.mean_tokens_per_second = json["mean_tokens_per_second"].get<double>();
  result.peak_device_memory_bytes = json.value("peak_device_memory_bytes", int64_t{0});
  result.optimizer_state_bytes = json.value("optimizer_state_bytes", int64_t{0});
  result.message = json.value("message", std::string());
  result.lr_scale = json.value("lr_scale", 1.0);
  if (json.contains("final_val_loss")) result.final_val_loss = json["final_val_loss"].get<double>();
  result.remedy_restart_requested = exit_code == kExitRemedyRestart;
  if (result.remedy_restart_requested) result.exit_code = kExitOk;
  result.preempted = exit_code == kExitPreempted;
  return result;
}

}  // namespace keel::launch
