// The run registry: one SQLite file (default <runs_root>/registry.sqlite) indexing run directories
// (their run_info.json, config.yaml, stability events and downsampled metrics) so runs can be
// listed and compared without re-reading every log. WAL mode, prepared statements; a corrupt or
// unreadable file is a KeelError naming it. Schema 2 adds the model diagnostics (the diag.* values
// of metrics.jsonl, one row per step and name, all steps kept); a schema-1 file is upgraded in
// place (its runs get diagnostics when re-imported, e.g. by `keel runs`). Torch-free.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace keel::registry {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kSchemaVersion = 2;

// One row of `runs`. Missing numbers are NaN (NULL in SQLite), missing times 0.
struct RunRecord {
  std::string id;  // the run directory (absolute, normalised by import_run_dir)
  std::string parent, recipe, status, config_yaml;
  int64_t started_unix = 0;
  int64_t ended_unix = 0;
  int64_t final_step = -1;
  double final_val_loss = kNaN;
  double best_val_loss = kNaN;
  double tokens_per_second = kNaN;  // by metrics/throughput.h, from metrics.jsonl where it is there
  double wall_seconds = kNaN;
  int64_t num_events = 0;  // filled by list_runs/get_run (count of `events` rows); not stored
};

// One stability event (events.jsonl); evidence_json holds the rest of the record (value,
// baseline, z, onset_step, loss/grad-norm windows).
struct EventRecord {
  int64_t step = -1;
  std::string kind, action, reason;
  int64_t checkpoint_step = -1;
  std::string evidence_json = "{}";
};

// One metrics.jsonl record (NaN where absent or non-finite, which JSON writes as null).
struct StepMetric {
  int64_t step = 0;
  double loss = kNaN;
  double grad_norm = kNaN;
  double lr = kNaN;
  double tokens_per_second = kNaN;
  double val_loss = kNaN;
  double step_time = kNaN;  // read from files; not stored in the registry
  bool skipped = false;     // likewise
  int64_t rollback_to = -1; // likewise
  bool warmup = false;      // likewise: a warm-up step, not timed (metrics/throughput.h)
};

// One model-diagnostics value of a metrics.jsonl record (diagnostics/model_diagnostics.h names
// them: "diag.layer3.head1.attention_normalised_entropy", "diag.layer0.linearity", ...).
struct DiagnosticValue {
  int64_t step = 0;  // the metrics record's step
  std::string name;  // the full key, "diag." included
  double value = kNaN;
};

// A run directory read from its files.
struct RunData {
  RunRecord info;
  std::vector<StepMetric> metrics;  // in execution order (rolled-back steps appear again)
  std::vector<EventRecord> events;
  std::vector<DiagnosticValue> diagnostics;  // every diag.* value, in file order
};

// Reads run_info.json (optional), config.yaml (optional), metrics.jsonl and events.jsonl (each
// optional; torn or unparsable lines are skipped). info.id is `run_dir` as given; best/final val
// loss and final step fall back to the metrics when run_info.json lacks them.
RunData read_run_dir(const std::string& run_dir);

// The registry id of a run directory: its absolute, lexically normal path without a trailing '/'.
std::string run_id_for(const std::string& run_dir);

// Keeps every `every`-th step (step % every == 0), every step with a val loss, a skip or a
// rollback mark, every step named in `events`, and the last record. every <= 1 keeps all.
std::vector<StepMetric> downsample_metrics(const std::vector<StepMetric>& metrics,
                                           const std::vector<EventRecord>& events, int64_t every);

class RunRegistry {
 public:
  // Opens (creating if needed) the registry file and its schema. Throws KeelError naming `path`
  // when the file cannot be opened, is not a SQLite database, is corrupt, or has a newer schema.
  explicit RunRegistry(std::string path);
  ~RunRegistry();
  RunRegistry(const RunRegistry&) = delete;
  RunRegistry& operator=(const RunRegistry&) = delete;

  const std::string& path() const { return path_; }

  // Inserts or replaces the `runs` row of record.id (num_events is ignored).
  void upsert_run(const RunRecord& record);
  // Appends rows for run_id, each call in one transaction.
  void add_events(const std::string& run_id, const std::vector<EventRecord>& events);
  void add_step_metrics(const std::string& run_id, const std::vector<StepMetric>& metrics);
  void add_diagnostics(const std::string& run_id, const std::vector<DiagnosticValue>& values);

  // Reads run_dir (read_run_dir) and replaces its rows (run, events, downsampled metrics, all
  // diagnostics) in one
  // transaction, so re-importing is idempotent. Returns the run id (run_id_for(run_dir)).
  std::string import_run_dir(const std::string& run_dir, int64_t downsample_every = 10);

  std::vector<RunRecord> list_runs() const;  // ordered by started_unix, then id
  std::optional<RunRecord> get_run(const std::string& id) const;
  std::vector<EventRecord> get_events(const std::string& run_id) const;       // in insertion order
  std::vector<StepMetric> get_step_metrics(const std::string& run_id) const;  // in insertion order
  // Diagnostics whose name starts with `name_prefix` ("" = all), in insertion order.
  std::vector<DiagnosticValue> get_diagnostics(const std::string& run_id, const std::string& name_prefix = "") const;

 private:
  class Statement;
  void exec(const std::string& sql) const;
  [[noreturn]] void fail(const std::string& what) const;
  void upsert_run_locked(const RunRecord& record);
  void add_events_locked(const std::string& run_id, const std::vector<EventRecord>& events);
  void add_step_metrics_locked(const std::string& run_id, const std::vector<StepMetric>& metrics);
  void add_diagnostics_locked(const std::string& run_id, const std::vector<DiagnosticValue>& values);
  void delete_rows_locked(const std::string& run_id);  // events, metrics, diagnostics (not the run)
  template <typename F>
  void in_transaction(F&& body);

  std::string path_;
  sqlite3* db_ = nullptr;
  mutable std::mutex mutex_;
  std::unique_ptr<Statement> upsert_run_, insert_event_, insert_metric_, delete_events_,
      delete_metrics_, select_runs_, select_run_, select_events_, select_metrics_, insert_diagnostic_,
      delete_diagnostics_, select_diagnostics_;
};

}  // namespace keel::registry
