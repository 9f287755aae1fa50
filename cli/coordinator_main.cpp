// keel-coordinator: the per-job coordinator process. Launchers (mpirun/srun scripts, `keel train`)
// start it first, read "listening on HOST:PORT" from its stdout, and hand that address to the
// workers; the next line is "metrics on HOST:PORT" (where Prometheus scrapes /metrics) or
// "metrics off". It exits 0 when every rank shut down normally, 1 with a message when the job
// failed, 2 on bad arguments, 128+N on signal N. Torch-free by design: it serves HTTP, which
// cannot run inside a LibTorch-CUDA process (docs/gpu.md).
//
// Security: it listens on loopback by default; on any other address it refuses to start without a
// shared token (--token-file, or the environment variable KEEL_COORDINATOR_TOKEN) and should serve
// TLS (--tls-cert/--tls-key, optionally --tls-client-ca for mutual TLS). The token is never logged.
// With --checkpoint-dir (the run's checkpoints folder, which `keel train` always passes) it takes
// a shard report only for a step whose files are on disk, and records a step as committed only
// once its folder is sealed there (the commit rule: coordinator/job_state_commit.cpp).
//
// Errors are one line without source file:line (what a user of `keel train` reads) unless --debug,
// which `keel --debug train` passes on. When `keel train` starts it, its stderr (the job's phases,
// its end) goes to RUN_DIR/coordinator.log, not the user's terminal (launch/local_job.h).
//
// SIGTERM (a scheduler preempting the job, which signals every process of it): the workers are
// finishing their step and saving a checkpoint, which needs this process to commit it, so it keeps
// serving until every rank has shut down (or --term-grace seconds passed), then exits. SIGINT, or a
// second SIGTERM, stops it at once.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <iostream>
#include <optional>
#include <thread>

#include "checkpoint/checkpoint_store.h"
#include "checkpoint/manifest.h"
#include "common/check.h"
#include "common/fs.h"
#include "rpc/coordinator_client.h"
#include "coordinator/coordinator_service.h"

namespace {

// Waits `seconds` unless one of `signals` arrives first.
void wait_unless_signalled(const sigset_t& signals, double seconds) {
  if (seconds <= 0) return;
  const timespec span{static_cast<time_t>(seconds),
                      static_cast<long>((seconds - static_cast<time_t>(seconds)) * 1e9)};
  sigtimedwait(&signals, nullptr, &span);
}

struct CoordinatorArgs {
  keel::coord::ServerOptions opts;
  std::string token_file, run_label, checkpoint_dir;
  double linger_seconds = 3.0;
  double term_grace_seconds = 120;
  double metrics_linger_seconds = 0;
  bool debug = false;
};

// Set by --debug once the command line is parsed; the error handlers read it.
bool g_debug = false;

// What the user reads of `e`: without source file:line unless --debug.
std::string user_message(const std::exception& e) {
  return g_debug ? e.what() : keel::without_source_locations(e.what());
}

void add_job_options(CLI::App& app, CoordinatorArgs& a) {
  auto& opts = a.opts;
  app.add_option("--listen", opts.listen_address, "host:port to listen on (port 0: pick a free one)")
      ->capture_default_str();
  app.add_option("--job-id", opts.job.job_id, "job id the workers must name")->capture_default_str();
  app.add_option("--world-size", opts.job.world_size, "number of worker processes")
      ->required()
      ->check(CLI::PositiveNumber);
  app.add_option("--dp", opts.job.dp_size, "data-parallel size (0: world-size / tp)")->capture_default_str();
  app.add_option("--tp", opts.job.tp_size, "tensor-parallel size")->capture_default_str();
  app.add_option("--heartbeat-timeout", opts.job.heartbeat_timeout_seconds,
                 "seconds without a heartbeat before a rank is declared dead")
      ->capture_default_str();
  app.add_option("--rendezvous-timeout", opts.job.rendezvous_timeout_seconds,
                 "seconds a worker waits in Register for the others")
      ->capture_default_str();
  app.add_option("--state-dir", opts.job.state_dir, "folder for the generation and committed checkpoints");
  app.add_option("--checkpoint-dir", a.checkpoint_dir,
                 "the run's checkpoints folder (RUN_DIR/checkpoints), as this process sees it: a shard report "
                 "is taken only for a step being written there, and a step is recorded as committed only "
                 "once sealed there");
  app.add_option("--token-file", a.token_file,
                 "file holding the shared token workers must present (default: $KEEL_COORDINATOR_TOKEN); "
                 "required beyond loopback");
  app.add_option("--tls-cert", opts.tls_cert_file, "PEM certificate to serve TLS with (with --tls-key)");
  app.add_option("--tls-key", opts.tls_key_file, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", opts.tls_client_ca_file,
                 "PEM CA: require client certificates signed by it (mutual TLS)");
  app.add_option("--term-grace", a.term_grace_seconds,
                 "after SIGTERM, seconds to keep serving while the workers save and shut down")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--linger", a.linger_seconds,
                 "seconds to keep serving after a failure so every worker's heartbeat sees it")
      ->capture_default_str();
  app.add_flag("--debug", a.debug, "errors keep the source file and line where they were raised");
}

void add_metrics_options(CLI::App& app, CoordinatorArgs& a) {
  a.opts.metrics.port = 0;
  app.add_option("--metrics-address", a.opts.metrics.address, "interface to serve Prometheus /metrics on")
      ->capture_default_str();
  app.add_option("--metrics-port", a.opts.metrics.port, "port of /metrics (0: pick a free one, -1: no /metrics)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 65535));
  app.add_option("--metrics-linger", a.metrics_linger_seconds,
                 "seconds to keep serving /metrics after the job ended, so Prometheus scrapes the end")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--run", a.run_label, "`run` label of every metric (default: the job id)");
  app.add_option("--recipe", a.opts.metrics.recipe, "`recipe` label of every metric")->capture_default_str();
}

// The commit rule's eyes on `root` (see JobOptions::disk): a save of a step is there, and its folder
// is sealed (manifest, every file at its size; the CRCs are the resume's business).
keel::coord::CheckpointDisk checkpoint_disk(const std::string& root) {
  using keel::checkpoint::CheckpointStore;
  keel::coord::CheckpointDisk disk;
  disk.save_missing = [root](int64_t step) -> std::string {
    try {
      if (CheckpointStore::save_exists(root, step)) return "";
    } catch (const std::exception& e) {
      return std::string("cannot look into ") + root + ": " + e.what();
    }
    return "neither " + root + "/" + CheckpointStore::dir_name(step) + " nor a save in progress of it exists";
  };
  disk.sealed = [root](int64_t step) {
    return keel::checkpoint::verify_checkpoint(root + "/" + CheckpointStore::dir_name(step),
                                               keel::checkpoint::VerifyLevel::kSizes, step)
        .ok;
  };
  return disk;
}

// Parses the command line and resolves the token; returns the exit code when the process must
// end now (help: 0, bad arguments or an unauthenticated non-loopback address: 2).
std::optional<int> parse(int argc, char** argv, CoordinatorArgs& a) {
  CLI::App app{"keel-coordinator: rendezvous, heartbeats and checkpoint commits of one Keel job"};
  add_job_options(app, a);
  add_metrics_options(app, a);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "keel-coordinator: " << e.what() << "\n";
    return 2;
  }
  g_debug = a.debug;
  try {
    a.opts.token = keel::coord::resolve_coordinator_token(a.token_file);
  } catch (const std::exception& e) {
    std::cerr << "keel-coordinator: " << user_message(e) << "\n";
    return 2;
  }
  if (a.opts.token.empty() && !keel::coord::is_loopback_listen_address(a.opts.listen_address)) {
    std::cerr << "keel-coordinator: refusing to listen on " << a.opts.listen_address
              << " without a shared token: beyond loopback every RPC must be authenticated. Give --token-file "
                 "FILE or set KEEL_COORDINATOR_TOKEN (and serve TLS with --tls-cert/--tls-key)\n";
    return 2;
  }
  a.opts.metrics.run = a.run_label.empty() ? a.opts.job.job_id : a.run_label;
  if (!a.checkpoint_dir.empty()) a.opts.job.disk = checkpoint_disk(a.checkpoint_dir);
  return std::nullopt;
}

// What launchers read from stdout (the addresses), and the job on stderr.
void announce(keel::coord::CoordinatorServer& server, const keel::coord::ServerOptions& opts) {
  if (!keel::coord::is_loopback_listen_address(opts.listen_address) && opts.tls_cert_file.empty()) {
    std::cerr << "keel-coordinator: WARNING: serving " << opts.listen_address
              << " without TLS: the token and all traffic cross the network in plaintext (use --tls-cert/--tls-key)\n";
  }
  std::cout << "listening on " << server.address() << "\n";
  if (server.metrics().serving()) {
    std::cout << "metrics on " << server.metrics().address() << std::endl;  // flushes: launchers wait
  } else {
    std::cout << "metrics off" << std::endl;
  }
  const auto& job_opts = server.job().options();
  std::cerr << "keel-coordinator: job '" << job_opts.job_id << "' world " << job_opts.world_size << " (dp "
            << job_opts.dp_size << " x tp " << job_opts.tp_size << "), generation "
            << server.job().snapshot().generation << "\n";
}

// Serves until the job ends (returns 0) or a signal stops it (returns its number). A first SIGTERM
// while workers are active drains: they are saving, which needs this process to commit.
int serve_until_done(keel::coord::CoordinatorServer& server, const sigset_t& signals, double term_grace_seconds) {
  const timespec poll{0, 200 * 1000 * 1000};
  keel::coord::JobPhase last = keel::coord::JobPhase::kWaiting;
  std::optional<std::chrono::steady_clock::time_point> draining_since;
  for (;;) {
    const int sig = sigtimedwait(&signals, nullptr, &poll);
    const auto phase_now = server.job().wait_finished(std::chrono::milliseconds(0));
    const bool workers_active = phase_now == keel::coord::JobPhase::kRunning || phase_now == keel::coord::JobPhase::kStopping;
    if (sig == SIGTERM && !draining_since && workers_active && term_grace_seconds > 0) {
      // Preemption: the workers got SIGTERM too and are saving; commit their checkpoint first.
      draining_since = std::chrono::steady_clock::now();
      std::cerr << "keel-coordinator: SIGTERM: serving until every rank shut down (at most " << term_grace_seconds
                << " s; signal again to stop now)\n";
    } else if (sig > 0) {
      return sig;
    }
    if (draining_since && std::chrono::steady_clock::now() - *draining_since >
                              std::chrono::duration<double>(term_grace_seconds)) {
      std::cerr << "keel-coordinator: the ranks did not shut down within " << term_grace_seconds << " s of SIGTERM\n";
      return SIGTERM;
    }
    const auto phase = server.job().wait_finished(std::chrono::milliseconds(0));
    if (phase != last) {
      std::cerr << "keel-coordinator: job is " << keel::coord::phase_name(phase) << "\n";
      last = phase;
    }
    if (keel::coord::is_terminal(phase)) return 0;
  }
}

// Stops the server and gives the process exit code (see the top of this file).
int stop(keel::coord::CoordinatorServer& server, const sigset_t& signals, const CoordinatorArgs& a, int signal_number) {
  const auto snap = server.job().snapshot();
  if (signal_number != 0) {
    std::cerr << "keel-coordinator: stopped by signal " << signal_number << "\n";
    server.stop();
    return 128 + signal_number;
  }
  if (snap.phase == keel::coord::JobPhase::kCompleted) {
    std::cerr << "keel-coordinator: job '" << snap.job_id << "' completed (latest committed step "
              << snap.latest_committed_step << ")\n";
    wait_unless_signalled(signals, a.metrics_linger_seconds);
    server.stop();
    return 0;
  }
  std::cerr << "keel-coordinator: job '" << snap.job_id << "' FAILED: " << snap.message << "\n";
  // Keep answering heartbeats a little so the surviving workers learn FAILED from us rather than
  // from a connection error, then exit non-zero so the launcher can restart the job.
  wait_unless_signalled(signals, std::max(a.linger_seconds, a.metrics_linger_seconds));
  server.stop();
  return 1;
}

int run(int argc, char** argv) {
  CoordinatorArgs a;
  if (const auto code = parse(argc, argv, a)) return *code;
  // Signals are taken by sigtimedwait, never by an asynchronous handler: block them before any
  // thread starts so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  keel::coord::CoordinatorServer server(a.opts);  // throws for a bad layout before anything listens
  server.start();
  announce(server, a.opts);
  const int signal_number = serve_until_done(server, signals, a.term_grace_seconds);
  return stop(server, signals, a, signal_number);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "keel-coordinator: error: " << user_message(e) << "\n";
    return 1;
  }
}
