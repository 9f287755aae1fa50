// RunRegistry: round trip, run-dir import, idempotence, corrupt files,
// model diagnostics stored and queryable, upgrade of a schema-1 file.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <cmath>
#include <fstream>

#include "common/check.h"
#include "registry/run_registry.h"
#include "tests/registry/registry_test_util.h"

namespace keel::registry {
namespace {

using testing::RunSpec;
using testing::TempDir;
using testing::write_run_dir;

int64_t count_rows(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  int64_t n = -1;
  if (sqlite3_step(stmt) == SQLITE_ROW) n = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return n;
}

TEST(RunRegistry, RoundTrip) {
  TempDir tmp;
  const std::string db = tmp.path() + "/sub/registry.sqlite";
  {
    RunRegistry registry(db);
    RunRecord r;
    r.id = "/runs/a";
    r.parent = "/runs/p";
    r.recipe = "vanilla";
    r.status = "running";
    r.config_yaml = "train:\n  lr: 0.01\n";
    r.started_unix = 17;
    r.final_step = 42;
    r.final_val_loss = 3.5;
    r.tokens_per_second = 1234.5;
    registry.upsert_run(r);
    r.status = "completed";  // upsert replaces
    r.ended_unix = 99;
    registry.upsert_run(r);
    EventRecord e;
    e.step = 7;
    e.kind = "loss_spike";
    e.action = "rollback";
    e.reason = "why";
    e.checkpoint_step = 5;
    e.evidence_json = "{\"z\":7}";
    registry.add_events("/runs/a", {e, e});
    StepMetric m;
    m.step = 3;
    m.loss = 2.5;
    m.grad_norm = std::nan("");
    m.val_loss = 2.75;
    registry.add_step_metrics("/runs/a", {m});
  }
  RunRegistry registry(db);  // reopened: the data persisted
  auto runs = registry.list_runs();
  ASSERT_EQ(runs.size(), 1u);
  auto got = registry.get_run("/runs/a");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->parent, "/runs/p");
  EXPECT_EQ(got->recipe, "vanilla");
  EXPECT_EQ(got->status, "completed");
  EXPECT_EQ(got->config_yaml, "train:\n  lr: 0.01\n");
  EXPECT_EQ(got->started_unix, 17);
  EXPECT_EQ(got->ended_unix, 99);
  EXPECT_EQ(got->final_step, 42);
  EXPECT_DOUBLE_EQ(got->final_val_loss, 3.5);
  EXPECT_TRUE(std::isnan(got->best_val_loss));
  EXPECT_DOUBLE_EQ(got->tokens_per_second, 1234.5);
  EXPECT_EQ(got->num_events, 2);
  EXPECT_FALSE(registry.get_run("/runs/b").has_value());
  auto events = registry.get_events("/runs/a");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, "loss_spike");
  EXPECT_EQ(events[0].action, "rollback");
  EXPECT_EQ(events[0].checkpoint_step, 5);
  EXPECT_EQ(events[0].evidence_json, "{\"z\":7}");
  auto metrics = registry.get_step_metrics("/runs/a");
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_DOUBLE_EQ(metrics[0].loss, 2.5);
  EXPECT_TRUE(std::isnan(metrics[0].grad_norm));
  EXPECT_DOUBLE_EQ(metrics[0].val_loss, 2.75);
  EXPECT_EQ(count_rows(db, "SELECT max(version) FROM schema_version"), kSchemaVersion);
}

TEST(RunRegistry, UsesWalMode) {
  TempDir tmp;
  const std::string db = tmp.path() + "/registry.sqlite";
  RunRegistry registry(db);
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(raw);
}

TEST(RunRegistry, ImportRunDirCountsAndDownsampling) {
  TempDir tmp;
  const std::string run = tmp.path() + "/runs/vanilla-1";
  write_run_dir(run);
  const std::string db = tmp.path() + "/runs/registry.sqlite";
  RunRegistry registry(db);
  const std::string id = registry.import_run_dir(run, 10);
  EXPECT_EQ(id, run_id_for(run));
  auto got = registry.get_run(id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->recipe, "vanilla");
  EXPECT_EQ(got->status, "completed");
  EXPECT_EQ(got->final_step, 100);
  EXPECT_NEAR(got->final_val_loss, 4.1, 1e-12);
  EXPECT_NEAR(got->best_val_loss, 4.1, 1e-12);
  EXPECT_NEAR(got->wall_seconds, 100.5, 1e-12);
  EXPECT_NE(got->config_yaml.find("d_model: 64"), std::string::npos);
  EXPECT_EQ(got->num_events, 4);
  // Steps 0,10..90 (10) + val steps 24,49,74,99 (4) + event steps 33,57,71,88 (4; 71 is also skipped).
  auto metrics = registry.get_step_metrics(id);
  ASSERT_EQ(metrics.size(), 18u);
  std::vector<int64_t> steps;
  for (const auto& m : metrics) steps.push_back(m.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 10, 20, 24, 30, 33, 40, 49, 50, 57, 60, 70, 71, 74, 80, 88, 90, 99}));
  EXPECT_TRUE(std::isnan(metrics[9].loss));  // step 57: null in the file
  EXPECT_NEAR(metrics[3].val_loss, 4.4, 1e-12);
  auto events = registry.get_events(id);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[1].kind, "nonfinite");
  EXPECT_EQ(events[1].checkpoint_step, 50);
  auto evidence = nlohmann::json::parse(events[1].evidence_json);
  EXPECT_DOUBLE_EQ(evidence["z"].get<double>(), 7.0);
  EXPECT_EQ(evidence["grad_norm_window"].size(), 2u);
  EXPECT_FALSE(evidence.contains("kind"));

  // Keep everything with downsample_every = 1.
  const std::string run2 = tmp.path() + "/runs/vanilla-2";
  write_run_dir(run2);
  registry.import_run_dir(run2, 1);
  EXPECT_EQ(registry.get_step_metrics(run_id_for(run2)).size(), 100u);  // the torn line is dropped
}

double query_real(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  double v = kNaN;
  if (sqlite3_step(stmt) == SQLITE_ROW) v = sqlite3_column_double(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return v;
}

TEST(RunRegistry, ImportStoresEveryDiagnosticAndTheyAreQueryable) {
  TempDir tmp;
  const std::string run = tmp.path() + "/runs/normfree";
  RunSpec spec;
  spec.diagnostics_every = 20;  // steps 19, 39, 59, 79, 99: none of them is kept by downsampling alone
  write_run_dir(run, spec);
  const std::string db = tmp.path() + "/registry.sqlite";
  RunRegistry registry(db);
  const std::string id = registry.import_run_dir(run, 10);

  auto data = read_run_dir(run);
  ASSERT_EQ(data.diagnostics.size(), 5u * 26u);
  auto all = registry.get_diagnostics(id);
  ASSERT_EQ(all.size(), 5u * 26u);  // all five diagnostic steps, not downsampled
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].step, data.diagnostics[i].step);
    EXPECT_EQ(all[i].name, data.diagnostics[i].name);
    EXPECT_DOUBLE_EQ(all[i].value, data.diagnostics[i].value);
  }
  auto linearity = registry.get_diagnostics(id, "diag.layer1.linearity");  // prefix: both variants
  ASSERT_EQ(linearity.size(), 10u);
  EXPECT_EQ(linearity[0].name, "diag.layer1.linearity");
  EXPECT_EQ(linearity[0].step, 19);
  EXPECT_NEAR(linearity[0].value, 0.95 + 19e-4, 1e-12);
  EXPECT_EQ(linearity[1].name, "diag.layer1.linearity_without_residual");
  EXPECT_EQ(registry.get_diagnostics(id, "diag.layer0.head2.").size(), 10u);
  EXPECT_TRUE(registry.get_diagnostics(id, "diag.layer7").empty());

  // Plain SQL over the table, as a user would query it.
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM diagnostics WHERE name LIKE '%entropy%'"), 5 * (2 * 6 + 1));
  EXPECT_NEAR(query_real(db, "SELECT value FROM diagnostics WHERE name = 'diag.layer0.head0.attention_normalised_entropy'"
                             " ORDER BY step DESC LIMIT 1"),
              0.95 + 99e-4, 1e-12);
  EXPECT_EQ(count_rows(db, "SELECT count(DISTINCT step) FROM diagnostics"), 5);

  // Re-import replaces.
  registry.import_run_dir(run, 10);
  EXPECT_EQ(registry.get_diagnostics(id).size(), 5u * 26u);
}

TEST(RunRegistry, SchemaOneFileIsUpgradedInPlace) {
  TempDir tmp;
  const std::string db = tmp.path() + "/registry.sqlite";
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
    const char* v1 =
        "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);"
        "CREATE TABLE runs (id TEXT PRIMARY KEY, parent TEXT, recipe TEXT, status TEXT, config_yaml TEXT,"
        " started_unix INTEGER, ended_unix INTEGER, final_step INTEGER, final_val_loss REAL,"
        " best_val_loss REAL, tokens_per_second REAL, wall_seconds REAL);"
        "CREATE TABLE events (run_id TEXT NOT NULL, step INTEGER, kind TEXT, action TEXT, reason TEXT,"
        " checkpoint_step INTEGER, evidence_json TEXT);"
        "CREATE TABLE step_metrics (run_id TEXT NOT NULL, step INTEGER, loss REAL, grad_norm REAL, lr REAL,"
        " tokens_per_second REAL, val_loss REAL);"
        "INSERT INTO runs(id, recipe) VALUES ('/old', 'vanilla');";
    ASSERT_EQ(sqlite3_exec(raw, v1, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  RunRegistry registry(db);
  EXPECT_EQ(count_rows(db, "SELECT max(version) FROM schema_version"), 2);
  ASSERT_TRUE(registry.get_run("/old").has_value());
  EXPECT_TRUE(registry.get_diagnostics("/old").empty());
  registry.add_diagnostics("/old", {{3, "diag.layer0.linearity", 0.5}});
  ASSERT_EQ(registry.get_diagnostics("/old").size(), 1u);
}

TEST(RunRegistry, ReimportIsIdempotent) {
  TempDir tmp;
  const std::string run = tmp.path() + "/r";
  write_run_dir(run);
  const std::string db = tmp.path() + "/registry.sqlite";
  RunRegistry registry(db);
  registry.import_run_dir(run, 10);
  registry.import_run_dir(run, 10);
  registry.import_run_dir(run + "/", 10);                         // same id, trailing slash
  registry.import_run_dir(tmp.path() + "/./r", 10);               // same id, not normal
  EXPECT_EQ(registry.list_runs().size(), 1u);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM events"), 4);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM step_metrics"), 18);
  // A changed run dir replaces the old rows.
  RunSpec spec;
  spec.steps = 50;
  spec.status = "aborted";
  write_run_dir(run, spec);
  registry.import_run_dir(run, 10);
  EXPECT_EQ(registry.get_run(run_id_for(run))->status, "aborted");
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM runs"), 1);
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM events"), 4);
  // 0..40 (5) + val 24,49 (2) + events 33 (1); 57,71,88 are past the end.
  EXPECT_EQ(count_rows(db, "SELECT count(*) FROM step_metrics"), 8);
}

TEST(RunRegistry, ImportWithoutRunInfoFallsBackToMetrics) {
  TempDir tmp;
  RunSpec spec;
  spec.with_run_info = false;
  write_run_dir(tmp.path() + "/r", spec);
  RunRegistry registry(tmp.path() + "/registry.sqlite");
  auto id = registry.import_run_dir(tmp.path() + "/r", 10);
  auto got = registry.get_run(id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status, "unknown");
  EXPECT_EQ(got->final_step, 100);
  EXPECT_NEAR(got->final_val_loss, 4.1, 1e-12);
  EXPECT_THROW(registry.import_run_dir(tmp.path() + "/missing", 10), KeelError);
}

TEST(RunRegistry, CorruptFileGivesClearError) {
  TempDir tmp;
  const std::string db = tmp.path() + "/registry.sqlite";
  {
    std::ofstream out(db);
    for (int i = 0; i < 512; ++i) out << "this is not a sqlite database, just text. ";
  }
  try {
    RunRegistry registry(db);
    FAIL() << "opening a corrupt registry should throw";
  } catch (const KeelError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(db), std::string::npos) << message;
    EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
  }
  // A folder where the file should be.
  std::filesystem::create_directories(tmp.path() + "/dir.sqlite");
  try {
    RunRegistry registry(tmp.path() + "/dir.sqlite");
    FAIL() << "opening a folder should throw";
  } catch (const KeelError& e) {
    EXPECT_NE(std::string(e.what()).find("dir.sqlite"), std::string::npos) << e.what();
  }
}

TEST(RunRegistry, NewerSchemaIsRefused) {
  TempDir tmp;
  const std::string db = tmp.path() + "/registry.sqlite";
  { RunRegistry registry(db); }
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "UPDATE schema_version SET version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  try {
    RunRegistry registry(db);
    FAIL() << "a newer schema should be refused";
  } catch (const KeelError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 99"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace keel::registry
