// The SQLite run registry (see run_registry.h).
#include "registry/run_registry.h"
#include "registry/run_throughput.h"

#include "metrics/metric_keys.h"

#include <sqlite3.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/fs.h"

namespace keel::registry {
namespace {

double number_or_nan(const nlohmann::json& record, const char* key) {
  auto it = record.find(key);
  if (it == record.end() || !it->is_number()) return kNaN;  // null = non-finite in Keel's logs
  return it->get<double>();
}

int64_t integer_or(const nlohmann::json& record, const char* key, int64_t fallback) {
  auto it = record.find(key);
  if (it == record.end() || !it->is_number()) return fallback;
  return it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(it->get<double>());
}

std::string string_or(const nlohmann::json& record, const char* key, const std::string& fallback = "") {
  auto it = record.find(key);
  if (it == record.end() || !it->is_string()) return fallback;
  return it->get<std::string>();
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  if (!in) return records;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded() || !record.is_object()) continue;  // a torn last line
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace

std::string run_id_for(const std::string& run_dir) {
  std::filesystem::path p = std::filesystem::absolute(run_dir).lexically_normal();
  std::string id = p.string();
  while (id.size() > 1 && id.back() == '/') id.pop_back();
  return id;
}

RunData read_run_dir(const std::string& run_dir) {
  KEEL_CHECK(std::filesystem::is_directory(run_dir), "run directory '" << run_dir << "' does not exist");
  RunData data;
  RunRecord& info = data.info;
  info.id = run_dir;
  info.status = "unknown";

  const std::string info_path = run_dir + "/run_info.json";
  if (fs::exists(info_path)) {
    auto json = nlohmann::json::parse(fs::read_file(info_path), nullptr, /*allow_exceptions=*/false);
    KEEL_CHECK(!json.is_discarded() && json.is_object(), "'" << info_path << "' is not a JSON object");
    info.parent = string_or(json, "parent");
    info.recipe = string_or(json, "recipe");
    info.status = string_or(json, "status", "unknown");
    info.started_unix = integer_or(json, "started_unix", 0);
    info.ended_unix = integer_or(json, "ended_unix", 0);
    info.final_step = integer_or(json, "final_step", -1);
    info.final_val_loss = number_or_nan(json, "final_val_loss");
    info.best_val_loss = number_or_nan(json, "best_val_loss");
    info.tokens_per_second = number_or_nan(json, metric_key::kTokensPerSecond);
    info.wall_seconds = number_or_nan(json, "wall_seconds");
  }
  if (fs::exists(run_dir + "/config.yaml")) info.config_yaml = fs::read_file(run_dir + "/config.yaml");

  for (const auto& m : read_jsonl(run_dir + "/metrics.jsonl")) {
    if (!m.contains("step")) continue;
    StepMetric s;
    s.step = integer_or(m, "step", 0);
    s.loss = number_or_nan(m, metric_key::kLoss);
    s.grad_norm = number_or_nan(m, metric_key::kGradNorm);
    s.lr = number_or_nan(m, metric_key::kLr);
    s.tokens_per_second = number_or_nan(m, metric_key::kTokensPerSecond);
    s.val_loss = number_or_nan(m, metric_key::kValLoss);
    s.step_time = number_or_nan(m, metric_key::kStepTime);
    auto skipped = m.find(metric_key::kSkipped);
    s.skipped = skipped != m.end() && skipped->is_boolean() && skipped->get<bool>();
    s.rollback_to = integer_or(m, metric_key::kRollbackTo, -1);
    auto warmup = m.find(metric_key::kWarmup);
    s.warmup = warmup != m.end() && warmup->is_boolean() && warmup->get<bool>();
    data.metrics.push_back(s);
    for (auto it = m.begin(); it != m.end(); ++it)
      if (it.key().rfind("diag.", 0) == 0 && (it->is_number() || it->is_null()))
        data.diagnostics.push_back({s.step, it.key(), it->is_number() ? it->get<double>() : kNaN});
  }
  for (const auto& e : read_jsonl(run_dir + "/events.jsonl")) {
    EventRecord ev;
    ev.step = integer_or(e, "step", -1);
    ev.kind = string_or(e, "kind");
    ev.action = string_or(e, "action");
    ev.reason = string_or(e, "reason");
    ev.checkpoint_step = integer_or(e, "checkpoint_step", -1);
    nlohmann::json evidence = nlohmann::json::object();
    for (auto it = e.begin(); it != e.end(); ++it) {
      if (it.key() == "step" || it.key() == "kind" || it.key() == "action" || it.key() == "reason" ||
          it.key() == "checkpoint_step")
        continue;
      evidence[it.key()] = it.value();
    }
    ev.evidence_json = evidence.dump();
    data.events.push_back(std::move(ev));
  }

  // Fill what run_info.json lacks (a run still going, or killed) from the metrics.
  double best = kNaN, last = kNaN;
  for (const auto& s : data.metrics) {
    if (std::isnan(s.val_loss)) continue;
    last = s.val_loss;
    if (std::isnan(best) || s.val_loss < best) best = s.val_loss;
  }
  if (std::isnan(info.final_val_loss)) info.final_val_loss = last;
  if (std::isnan(info.best_val_loss)) info.best_val_loss = best;
  else if (!std::isnan(best)) info.best_val_loss = std::min(info.best_val_loss, best);
  if (!std::isnan(info.final_val_loss) &&
      (std::isnan(info.best_val_loss) || info.final_val_loss < info.best_val_loss))
    info.best_val_loss = info.final_val_loss;
  if (info.final_step < 0 && !data.metrics.empty()) info.final_step = data.metrics.back().step + 1;
  // One throughput definition for every report: computed from the records when there are any
  // (run_info.json of older runs held a per-process figure, and 0 for runs too short to time).
  if (!data.metrics.empty()) info.tokens_per_second = run_tokens_per_second(data.metrics);
  if (info.tokens_per_second == 0) info.tokens_per_second = kNaN;
  info.num_events = static_cast<int64_t>(data.events.size());
  return data;
}

std::vector<StepMetric> downsample_metrics(const std::vector<StepMetric>& metrics,
                                           const std::vector<EventRecord>& events, int64_t every) {
  if (every <= 1) return metrics;
  std::set<int64_t> event_steps;
  for (const auto& e : events) event_steps.insert(e.step);
  std::vector<StepMetric> kept;
  for (size_t i = 0; i < metrics.size(); ++i) {
    const StepMetric& s = metrics[i];
    if (s.step % every == 0 || !std::isnan(s.val_loss) || s.skipped || s.rollback_to >= 0 ||
        event_steps.count(s.step) || i + 1 == metrics.size())
      kept.push_back(s);
  }
  return kept;
}

// ---- SQLite plumbing ----

class RunRegistry::Statement {
 public:
  Statement(const RunRegistry& owner, const char* sql) : owner_(owner) {
    if (sqlite3_prepare_v2(owner.db_, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      owner.fail(std::string("cannot prepare '") + sql + "'");
  }
  ~Statement() { sqlite3_finalize(stmt_); }

  Statement& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& bind(int i, int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Statement& bind(int i, double v) {
    check(std::isfinite(v) ? sqlite3_bind_double(stmt_, i, v) : sqlite3_bind_null(stmt_, i));
    return *this;
  }
  // true while a row is available.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    owner_.fail("statement failed");
  }
  void run() {
    while (step()) {
    }
    reset();
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col)) : "";
  }
  int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL ? kNaN : sqlite3_column_double(stmt_, col);
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) owner_.fail("cannot bind a parameter");
  }
  const RunRegistry& owner_;
  sqlite3_stmt* stmt_ = nullptr;
};

void RunRegistry::fail(const std::string& what) const {
  std::string detail = db_ ? sqlite3_errmsg(db_) : "out of memory";
  int code = db_ ? sqlite3_errcode(db_) : SQLITE_NOMEM;
  std::string hint;
  if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
    hint = " (the file is corrupt or not a run registry: move it aside and run `keel runs` to rebuild it)";
  KEEL_CHECK(false, "run registry '" << path_ << "': " << what << ": " << detail << hint);
  std::abort();  // unreachable
}

void RunRegistry::exec(const std::string& sql) const {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    sqlite3_free(error);
    fail("'" + sql.substr(0, 60) + "' failed");
  }
}

template <typename F>
void RunRegistry::in_transaction(F&& body) {
  exec("BEGIN IMMEDIATE");
  try {
    body();
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  exec("COMMIT");
}

RunRegistry::RunRegistry(std::string path) : path_(std::move(path)) {
  KEEL_CHECK(!path_.empty(), "run registry: empty file name");
  const auto parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty() && !std::filesystem::exists(parent)) fs::make_dirs(parent.string());
  if (fs::exists(path_) && !std::filesystem::is_regular_file(path_))
    KEEL_CHECK(false, "run registry '" << path_ << "' is not a regular file");
  int rc = sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  try {
    if (rc != SQLITE_OK) fail("cannot open");
    sqlite3_busy_timeout(db_, 5000);  // other `keel runs` processes, a training run's writer
    sqlite3_extended_result_codes(db_, 0);
    // The first read of the file: a non-SQLite or corrupt file fails here.
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
    exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    int64_t version = -1;
    {
      Statement s(*this, "SELECT coalesce(max(version), -1) FROM schema_version");
      if (s.step()) version = s.integer(0);
    }
    KEEL_CHECK(version <= kSchemaVersion, "run registry '" << path_ << "' has schema version " << version
                                          << ", newer than this keel's " << kSchemaVersion);
    if (version < kSchemaVersion) {
      in_transaction([&] {
        exec(
            "CREATE TABLE IF NOT EXISTS runs ("
            " id TEXT PRIMARY KEY, parent TEXT, recipe TEXT, status TEXT, config_yaml TEXT,"
            " started_unix INTEGER, ended_unix INTEGER, final_step INTEGER, final_val_loss REAL,"
            " best_val_loss REAL, tokens_per_second REAL, wall_seconds REAL)");
        exec(
            "CREATE TABLE IF NOT EXISTS events ("
            " run_id TEXT NOT NULL, step INTEGER, kind TEXT, action TEXT, reason TEXT,"
            " checkpoint_step INTEGER, evidence_json TEXT)");
        exec("CREATE INDEX IF NOT EXISTS events_run ON events(run_id)");
        exec(
            "CREATE TABLE IF NOT EXISTS step_metrics ("
            " run_id TEXT NOT NULL, step INTEGER, loss REAL, grad_norm REAL, lr REAL,"
            " tokens_per_second REAL, val_loss REAL)");
        exec("CREATE INDEX IF NOT EXISTS step_metrics_run ON step_metrics(run_id, step)");
        exec("CREATE TABLE IF NOT EXISTS diagnostics (run_id TEXT NOT NULL, step INTEGER, name TEXT, value REAL)");
        exec("CREATE INDEX IF NOT EXISTS diagnostics_run ON diagnostics(run_id, name, step)");
        exec("DELETE FROM schema_version");
        exec("INSERT INTO schema_version(version) VALUES (" + std::to_string(kSchemaVersion) + ")");
      });
    }
    upsert_run_ = std::make_unique<Statement>(
        *this,
        "INSERT INTO runs(id, parent, recipe, status, config_yaml, started_unix, ended_unix, final_step,"
        " final_val_loss, best_val_loss, tokens_per_second, wall_seconds)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        " ON CONFLICT(id) DO UPDATE SET parent = excluded.parent, recipe = excluded.recipe,"
        " status = excluded.status, config_yaml = excluded.config_yaml,"
        " started_unix = excluded.started_unix, ended_unix = excluded.ended_unix,"
        " final_step = excluded.final_step, final_val_loss = excluded.final_val_loss,"
        " best_val_loss = excluded.best_val_loss, tokens_per_second = excluded.tokens_per_second,"
        " wall_seconds = excluded.wall_seconds");
    insert_event_ = std::make_unique<Statement>(
        *this,
        "INSERT INTO events(run_id, step, kind, action, reason, checkpoint_step, evidence_json)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    insert_metric_ = std::make_unique<Statement>(
        *this,
        "INSERT INTO step_metrics(run_id, step, loss, grad_norm, lr, tokens_per_second, val_loss)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    insert_diagnostic_ = std::make_unique<Statement>(
        *this, "INSERT INTO diagnostics(run_id, step, name, value) VALUES (?1, ?2, ?3, ?4)");
    delete_diagnostics_ = std::make_unique<Statement>(*this, "DELETE FROM diagnostics WHERE run_id = ?1");
    select_diagnostics_ = std::make_unique<Statement>(
        *this,
        "SELECT step, name, value FROM diagnostics WHERE run_id = ?1 AND substr(name, 1, length(?2)) = ?2"
        " ORDER BY rowid");
    delete_events_ = std::make_unique<Statement>(*this, "DELETE FROM events WHERE run_id = ?1");
    delete_metrics_ = std::make_unique<Statement>(*this, "DELETE FROM step_metrics WHERE run_id = ?1");
    const char* run_columns =
        "SELECT r.id, r.parent, r.recipe, r.status, r.config_yaml, r.started_unix, r.ended_unix,"
        " r.final_step, r.final_val_loss, r.best_val_loss, r.tokens_per_second, r.wall_seconds,"
        " (SELECT count(*) FROM events e WHERE e.run_id = r.id) FROM runs r";
    select_runs_ = std::make_unique<Statement>(
        *this, (std::string(run_columns) + " ORDER BY r.started_unix, r.id").c_str());
    select_run_ = std::make_unique<Statement>(*this, (std::string(run_columns) + " WHERE r.id = ?1").c_str());
    select_events_ = std::make_unique<Statement>(
        *this,
        "SELECT step, kind, action, reason, checkpoint_step, evidence_json FROM events"
        " WHERE run_id = ?1 ORDER BY rowid");
    select_metrics_ = std::make_unique<Statement>(
        *this,
        "SELECT step, loss, grad_norm, lr, tokens_per_second, val_loss FROM step_metrics"
        " WHERE run_id = ?1 ORDER BY rowid");
  } catch (...) {
    upsert_run_.reset();
    insert_event_.reset();
    insert_metric_.reset();
    delete_events_.reset();
    delete_metrics_.reset();
    select_runs_.reset();
    select_run_.reset();
    select_events_.reset();
    select_metrics_.reset();
    insert_diagnostic_.reset();
    delete_diagnostics_.reset();
    select_diagnostics_.reset();
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

RunRegistry::~RunRegistry() {
  upsert_run_.reset();
  insert_event_.reset();
  insert_metric_.reset();
  delete_events_.reset();
  delete_metrics_.reset();
  select_runs_.reset();
  select_run_.reset();
  select_events_.reset();
  select_metrics_.reset();
  insert_diagnostic_.reset();
  delete_diagnostics_.reset();
  select_diagnostics_.reset();
  if (db_) sqlite3_close(db_);
}

void RunRegistry::upsert_run_locked(const RunRecord& r) {
  upsert_run_->bind(1, r.id).bind(2, r.parent).bind(3, r.recipe).bind(4, r.status).bind(5, r.config_yaml);
  upsert_run_->bind(6, r.started_unix).bind(7, r.ended_unix).bind(8, r.final_step);
  upsert_run_->bind(9, r.final_val_loss).bind(10, r.best_val_loss).bind(11, r.tokens_per_second);
  upsert_run_->bind(12, r.wall_seconds);
  upsert_run_->run();
}

void RunRegistry::add_events_locked(const std::string& run_id, const std::vector<EventRecord>& events) {
  for (const auto& e : events) {
    insert_event_->bind(1, run_id).bind(2, e.step).bind(3, e.kind).bind(4, e.action).bind(5, e.reason);
    insert_event_->bind(6, e.checkpoint_step).bind(7, e.evidence_json);
    insert_event_->run();
  }
}

void RunRegistry::add_step_metrics_locked(const std::string& run_id, const std::vector<StepMetric>& metrics) {
  for (const auto& m : metrics) {
    insert_metric_->bind(1, run_id).bind(2, m.step).bind(3, m.loss).bind(4, m.grad_norm).bind(5, m.lr);
    insert_metric_->bind(6, m.tokens_per_second).bind(7, m.val_loss);
    insert_metric_->run();
  }
}

void RunRegistry::add_diagnostics_locked(const std::string& run_id, const std::vector<DiagnosticValue>& values) {
  for (const auto& v : values) {
    insert_diagnostic_->bind(1, run_id).bind(2, v.step).bind(3, v.name).bind(4, v.value);
    insert_diagnostic_->run();
  }
}

void RunRegistry::delete_rows_locked(const std::string& run_id) {
  delete_events_->bind(1, run_id).run();
  delete_metrics_->bind(1, run_id).run();
  delete_diagnostics_->bind(1, run_id).run();
}

void RunRegistry::upsert_run(const RunRecord& record) {
  KEEL_CHECK(!record.id.empty(), "run registry '" << path_ << "': a run needs an id");
  std::lock_guard<std::mutex> lock(mutex_);
  upsert_run_locked(record);
}

void RunRegistry::add_events(const std::string& run_id, const std::vector<EventRecord>& events) {
  std::lock_guard<std::mutex> lock(mutex_);
  in_transaction([&] { add_events_locked(run_id, events); });
}

void RunRegistry::add_step_metrics(const std::string& run_id, const std::vector<StepMetric>& metrics) {
  std::lock_guard<std::mutex> lock(mutex_);
  in_transaction([&] { add_step_metrics_locked(run_id, metrics); });
}

void RunRegistry::add_diagnostics(const std::string& run_id, const std::vector<DiagnosticValue>& values) {
  std::lock_guard<std::mutex> lock(mutex_);
  in_transaction([&] { add_diagnostics_locked(run_id, values); });
}

std::string RunRegistry::import_run_dir(const std::string& run_dir, int64_t downsample_every) {
  RunData data = read_run_dir(run_dir);
  data.info.id = run_id_for(run_dir);
  const auto kept = downsample_metrics(data.metrics, data.events, downsample_every);
  std::lock_guard<std::mutex> lock(mutex_);
  in_transaction([&] {
    delete_rows_locked(data.info.id);
    upsert_run_locked(data.info);
    add_events_locked(data.info.id, data.events);
    add_step_metrics_locked(data.info.id, kept);
    add_diagnostics_locked(data.info.id, data.diagnostics);
  });
  return data.info.id;
}

namespace {
template <typename S>
RunRecord run_from_row(S& s) {
  RunRecord r;
  r.id = s.text(0);
  r.parent = s.text(1);
  r.recipe = s.text(2);
  r.status = s.text(3);
  r.config_yaml = s.text(4);
  r.started_unix = s.integer(5);
  r.ended_unix = s.integer(6);
  r.final_step = s.integer(7);
  r.final_val_loss = s.real(8);
  r.best_val_loss = s.real(9);
  r.tokens_per_second = s.real(10);
  r.wall_seconds = s.real(11);
  r.num_events = s.integer(12);
  return r;
}
}  // namespace

std::vector<RunRecord> RunRegistry::list_runs() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<RunRecord> runs;
  while (select_runs_->step()) runs.push_back(run_from_row(*select_runs_));
  select_runs_->reset();
  return runs;
}

std::optional<RunRecord> RunRegistry::get_run(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::optional<RunRecord> run;
  select_run_->bind(1, id);
  if (select_run_->step()) run = run_from_row(*select_run_);
  select_run_->reset();
  return run;
}

std::vector<EventRecord> RunRegistry::get_events(const std::string& run_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<EventRecord> events;
  select_events_->bind(1, run_id);
  while (select_events_->step()) {
    EventRecord e;
    e.step = select_events_->integer(0);
    e.kind = select_events_->text(1);
    e.action = select_events_->text(2);
    e.reason = select_events_->text(3);
    e.checkpoint_step = select_events_->integer(4);
    e.evidence_json = select_events_->text(5);
    events.push_back(std::move(e));
  }
  select_events_->reset();
  return events;
}

std::vector<StepMetric> RunRegistry::get_step_metrics(const std::string& run_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<StepMetric> metrics;
  select_metrics_->bind(1, run_id);
  while (select_metrics_->step()) {
    StepMetric m;
    m.step = select_metrics_->integer(0);
    m.loss = select_metrics_->real(1);
    m.grad_norm = select_metrics_->real(2);
    m.lr = select_metrics_->real(3);
    m.tokens_per_second = select_metrics_->real(4);
    m.val_loss = select_metrics_->real(5);
    metrics.push_back(m);
  }
  select_metrics_->reset();
  return metrics;
}

std::vector<DiagnosticValue> RunRegistry::get_diagnostics(const std::string& run_id,
                                                          const std::string& name_prefix) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<DiagnosticValue> values;
  select_diagnostics_->bind(1, run_id).bind(2, name_prefix);
  while (select_diagnostics_->step())
    values.push_back({select_diagnostics_->integer(0), select_diagnostics_->text(1), select_diagnostics_->real(2)});
  select_diagnostics_->reset();
  return values;
}

}  // namespace keel::registry
