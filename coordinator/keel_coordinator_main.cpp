// keel-coordinator: the per-job coordinator process. Launchers (mpirun/srun scripts, `keel train`)
// start it first, read "listening on HOST:PORT" from its stdout, and hand that address to the
// workers; the next line is "metrics on HOST:PORT" (where Prometheus scrapes /metrics) or
// "metrics off". It exits 0 when every rank shut down normally, 1 with a message when the job
// failed, 2 on bad arguments, 128+N on signal N. Torch-free by design: it serves HTTP, which
// cannot run inside a LibTorch-CUDA process (shared notes/gpu-build.md).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <iostream>
#include <thread>

#include "common/fs.h"
#include "coordinator/coordinator_service.h"

namespace {

std::string read_token(const std::string& path) {
  std::string token = keel::fs::read_file(path);
  const auto end = token.find_last_not_of(" \t\r\n");
  token = end == std::string::npos ? "" : token.substr(0, end + 1);
  KEEL_CHECK(!token.empty(), "token file " << path << " is empty");
  return token;
}

// Waits `seconds` unless one of `signals` arrives first.
void wait_unless_signalled(const sigset_t& signals, double seconds) {
  if (seconds <= 0) return;
  const timespec span{static_cast<time_t>(seconds),
                      static_cast<long>((seconds - static_cast<time_t>(seconds)) * 1e9)};
  sigtimedwait(&signals, nullptr, &span);
}

int run(int argc, char** argv) {
  CLI::App app{"keel-coordinator: rendezvous, heartbeats and checkpoint commits of one Keel job"};
  keel::coord::ServerOptions opts;
  std::string token_file;
  double linger_seconds = 3.0;
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
  app.add_option("--token-file", token_file, "file holding the shared token workers must present");
  app.add_option("--linger", linger_seconds,
                 "seconds to keep serving after a failure so every worker's heartbeat sees it")
      ->capture_default_str();
  opts.metrics.port = 0;
  double metrics_linger_seconds = 0;
  app.add_option("--metrics-address", opts.metrics.address, "interface to serve Prometheus /metrics on")
      ->capture_default_str();
  app.add_option("--metrics-port", opts.metrics.port, "port of /metrics (0: pick a free one, -1: no /metrics)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 65535));
  app.add_option("--metrics-linger", metrics_linger_seconds,
                 "seconds to keep serving /metrics after the job ended, so Prometheus scrapes the end")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  std::string run_label;
  app.add_option("--run", run_label, "`run` label of every metric (default: the job id)");
  app.add_option("--recipe", opts.metrics.recipe, "`recipe` label of every metric")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "keel-coordinator: " << e.what() << "\n";
    return 2;
  }
  if (!token_file.empty()) opts.token = read_token(token_file);
  opts.metrics.run = run_label.empty() ? opts.job.job_id : run_label;

  // Signals are taken by sigtimedwait below, never by an asynchronous handler: block them before
  // any thread starts so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  keel::coord::CoordinatorServer server(opts);  // throws for a bad layout before anything listens
  server.start();
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

  int signal_number = 0;
  const timespec poll{0, 200 * 1000 * 1000};
  keel::coord::JobPhase last = keel::coord::JobPhase::kWaiting;
  for (;;) {
    const int sig = sigtimedwait(&signals, nullptr, &poll);
    if (sig > 0) {
      signal_number = sig;
      break;
    }
    const auto phase = server.job().wait_finished(std::chrono::milliseconds(0));
    if (phase != last) {
      std::cerr << "keel-coordinator: job is " << keel::coord::phase_name(phase) << "\n";
      last = phase;
    }
    if (keel::coord::is_terminal(phase)) break;
  }

  const auto snap = server.job().snapshot();
  if (signal_number != 0) {
    std::cerr << "keel-coordinator: stopped by signal " << signal_number << "\n";
    server.stop();
    return 128 + signal_number;
  }
  if (snap.phase == keel::coord::JobPhase::kCompleted) {
    std::cerr << "keel-coordinator: job '" << snap.job_id << "' completed (latest committed step "
              << snap.latest_committed_step << ")\n";
    wait_unless_signalled(signals, metrics_linger_seconds);
    server.stop();
    return 0;
  }
  std::cerr << "keel-coordinator: job '" << snap.job_id << "' FAILED: " << snap.message << "\n";
  // Keep answering heartbeats a little so the surviving workers learn FAILED from us rather than
  // from a connection error, then exit non-zero so the launcher can restart the job.
  wait_unless_signalled(signals, std::max(linger_seconds, metrics_linger_seconds));
  server.stop();
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "keel-coordinator: error: " << e.what() << "\n";
    return 1;
  }
}
