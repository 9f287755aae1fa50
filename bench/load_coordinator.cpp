// keel-load-coordinator: plays N simulated workers against a real keel-coordinator on loopback and
// reports what the coordinator costs at that scale (docs/reliability.md has the figures).
//
//   keel-load-coordinator --coordinator PATH/keel-coordinator --workers 4096 --seconds 30 [--json OUT]
//
// It starts the coordinator (world size N, /metrics on a free loopback port), then every simulated
// worker does what keel-worker does: Register (the rendezvous: all N calls wait on the server until
// the last one arrives), a heartbeat every second (phases spread evenly over the second) on its
// long-lived HeartbeatStream (--unary-heartbeats: one Heartbeat call per beat, as before), one
// MetricsBatch a second (one step, 16 values) on its long-lived ReportMetrics stream, and Shutdown
// at the end. Each worker has its own connection unless --connections says fewer. One thread drives
// every call through a gRPC completion queue, so the generator itself stays light.
//
// Measured: latency percentiles (p50/p95/p99/max) of Register, Heartbeat, a metrics Write and
// JobStatus (what `keel train` polls once a second); the coordinator's CPU (utime + stime from
// /proc/PID/stat over the measured window, as cores) and memory (VmRSS, VmHWM, threads); the time
// of a /metrics scrape every 5 s; and that the coordinator saw every worker alive and received
// every metrics batch sent. Bounded: the run lasts --seconds (plus registration, capped by
// --register-timeout), and the exit code is non-zero when a call failed or a batch was lost.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "rpc/grpc_runtime.h"
#include "keel/v1/coordinator.grpc.pb.h"

namespace {

namespace v1 = keel::v1;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// ---- the coordinator child process ----------------------------------------------------------------

struct Child {
  pid_t pid = -1;
  int out = -1;
  std::string buffer;

  Child(std::vector<std::string> argv) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid = fork();
    if (pid == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(fds[1]);
    out = fds[0];
  }
  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    close(out);
  }
  std::string line(int timeout_ms) {
    const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (buffer.find('\n') == std::string::npos) {
      pollfd p{out, POLLIN, 0};
      const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count());
      if (left <= 0 || poll(&p, 1, left) <= 0) return "";
      char chunk[256];
      const ssize_t n = read(out, chunk, sizeof(chunk));
      if (n <= 0) return "";
      buffer.append(chunk, static_cast<size_t>(n));
    }
    const auto nl = buffer.find('\n');
    std::string l = buffer.substr(0, nl);
    buffer.erase(0, nl + 1);
    return l;
  }
  int wait_exit(int timeout_ms) {
    const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < end) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      usleep(20000);
    }
    return -1;
  }
};

// CPU seconds (utime + stime) of `pid`, from /proc/PID/stat.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stod(f);
    if (i == 15) stime = std::stod(f);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// VmRSS, VmHWM (KiB) and Threads of `pid`, from /proc/PID/status.
std::map<std::string, double> proc_status(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::map<std::string, double> out;
  std::string line;
  while (std::getline(in, line)) {
    for (const char* key : {"VmRSS", "VmHWM", "Threads"}) {
      if (line.rfind(std::string(key) + ":", 0) == 0) out[key] = std::stod(line.substr(line.find(':') + 1));
    }
  }
  return out;
}

// GET http://HOST:PORT/metrics over a plain socket; returns (milliseconds, bytes), bytes -1 on error.
std::pair<double, long> scrape(const std::string& host_port) {
  const auto start = Clock::now();
  const auto colon = host_port.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return {ms_since(start), -1};
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: " + host_port + "\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return {ms_since(start), -1};
  }
  long total = 0;
  char buffer[65536];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) total += n;
  close(fd);
  return {ms_since(start), total};
}

// ---- latency bookkeeping ------------------------------------------------------------------------

struct Latencies {
  std::vector<double> ms;
  uint64_t errors = 0;
  std::string first_error;
  void add(double v) { ms.push_back(v); }
  void error(const grpc::Status& s) {
    if (errors++ == 0) first_error = std::to_string(s.error_code()) + ": " + s.error_message();
  }
  nlohmann::json summary() {
    nlohmann::json j = {{"count", ms.size()}, {"errors", errors}};
    if (!first_error.empty()) j["first_error"] = first_error;
    if (ms.empty()) return j;
    std::sort(ms.begin(), ms.end());
    auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * static_cast<double>(ms.size())))]; };
    j["p50_ms"] = at(0.50);
    j["p95_ms"] = at(0.95);
    j["p99_ms"] = at(0.99);
    j["max_ms"] = ms.back();
    return j;
  }
};

// ---- the simulated workers ----------------------------------------------------------------------

struct Worker;

// One outstanding call; its address is the completion-queue tag.
struct Op {
  enum Kind {
    kRegister, kHeartbeat, kStreamStart, kWrite, kWritesDone, kStreamFinish, kShutdown,
    kBeatStreamStart, kBeatWrite, kBeatRead, kBeatWritesDone, kBeatStreamFinish
  };
  Op(Kind k, Worker* w, Clock::time_point t) : kind(k), worker(w), start(t) {}
  Kind kind;
  Worker* worker = nullptr;
  Clock::time_point start;
  std::unique_ptr<grpc::ClientContext> ctx;  // unary calls own theirs; stream ops use the worker's
  v1::RegisterReply register_reply;
  v1::HeartbeatReply heartbeat_reply;
  v1::Ack ack;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::RegisterReply>> register_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::HeartbeatReply>> heartbeat_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::Ack>> ack_reader;
};

struct Worker {
  int index = 0;
  v1::Coordinator::Stub* stub = nullptr;
  int rank = -1;
  int64_t generation = 0;
  int64_t step = 0;
  bool heartbeat_in_flight = false;
  // The HeartbeatStream: a beat is a Write then a Read of its reply.
  grpc::ClientContext beat_ctx;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::HeartbeatRequest, v1::HeartbeatReply>> beat_stream;
  v1::HeartbeatReply beat_reply;
  Clock::time_point beat_sent;
  bool beat_ready = false, beat_closed = false, beat_finished = false;
  // The ReportMetrics stream.
  grpc::ClientContext stream_ctx;
  v1::Ack stream_ack;
  std::unique_ptr<grpc::ClientAsyncWriter<v1::MetricsBatch>> stream;
  bool stream_ready = false, write_in_flight = false, stream_closed = false, closing = false;
  uint64_t batches_written = 0, writes_skipped = 0;
};

struct Options {
  std::string coordinator;
  int workers = 256;
  double seconds = 30;
  double warmup_seconds = 3;
  int connections = 0;  // 0: one per worker
  bool unary_heartbeats = false;
  double register_timeout = 300;
  std::string json_out;
};

int run(const Options& o) {
  // Thousands of connections need thousands of descriptors, here and in the coordinator (inherited).
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);

  Child coordinator({o.coordinator, "--listen", "127.0.0.1:0", "--world-size", std::to_string(o.workers), "--job-id",
                     "load", "--metrics-port", "0", "--heartbeat-timeout", "30", "--rendezvous-timeout",
                     std::to_string(o.register_timeout), "--linger", "0"});
  std::string address, metrics;
  for (int i = 0; i < 2; ++i) {
    const std::string l = coordinator.line(15000);
    if (l.rfind("listening on ", 0) == 0) address = l.substr(13);
    if (l.rfind("metrics on ", 0) == 0) metrics = l.substr(11);
  }
  if (address.empty() || metrics.empty()) {
    std::cerr << "keel-load-coordinator: the coordinator did not start\n";
    return 1;
  }
  const double idle_rss_kib = proc_status(coordinator.pid)["VmRSS"];

  const int connections = o.connections > 0 ? std::min(o.connections, o.workers) : o.workers;
  std::vector<std::unique_ptr<v1::Coordinator::Stub>> stubs;
  for (int c = 0; c < connections; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("keel.load.connection", c);  // distinct arguments: a connection of its own
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    keel::coord::tune_channel_arguments(args);  // as keel-worker's channel
    stubs.push_back(v1::Coordinator::NewStub(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  }
  std::vector<Worker> workers(o.workers);
  for (int i = 0; i < o.workers; ++i) {
    workers[i].index = i;
    workers[i].stub = stubs[i % connections].get();
  }

  grpc::CompletionQueue cq;
  std::map<std::string, Latencies> lat;
  bool measuring = false;
  int registered = 0, shut_down = 0, streams_finished = 0, beat_streams_finished = 0;
  uint64_t inflight = 0;

  auto deadline_ctx = [](double seconds) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    return ctx;
  };

  // Registration: every worker at once; the server answers them all when the last one arrived.
  const auto register_start = Clock::now();
  for (auto& w : workers) {
    auto* op = new Op{Op::kRegister, &w, Clock::now()};
    op->ctx = deadline_ctx(o.register_timeout);
    op->ctx->set_wait_for_ready(true);
    v1::RegisterRequest req;
    req.set_job_id("load");
    req.set_host("sim-host-" + std::to_string(w.index / 8));
    req.set_local_rank(w.index % 8);
    req.set_device("cpu");
    req.set_pid(100000 + w.index);
    req.set_requested_world_size(o.workers);
    req.set_requested_rank(w.index);
    op->register_reader = w.stub->PrepareAsyncRegister(op->ctx.get(), req, &cq);
    op->register_reader->StartCall();
    op->register_reader->Finish(&op->register_reply, &op->status, op);
    ++inflight;
  }

  auto beat_request = [](const Worker& w) {
    v1::HeartbeatRequest req;
    req.set_job_id("load");
    req.set_rank(w.rank);
    req.set_generation(w.generation);
    req.set_step(w.step);
    return req;
  };
  auto start_heartbeat = [&](Worker& w) {
    if (w.heartbeat_in_flight) return;
    if (!o.unary_heartbeats) {
      if (!w.beat_ready || w.beat_closed) return;
      w.heartbeat_in_flight = true;
      w.beat_sent = Clock::now();
      w.beat_stream->Write(beat_request(w), new Op{Op::kBeatWrite, &w, w.beat_sent});
      ++inflight;
      return;
    }
    w.heartbeat_in_flight = true;
    auto* op = new Op{Op::kHeartbeat, &w, Clock::now()};
    op->ctx = deadline_ctx(10);
    op->heartbeat_reader = w.stub->PrepareAsyncHeartbeat(op->ctx.get(), beat_request(w), &cq);
    op->heartbeat_reader->StartCall();
    op->heartbeat_reader->Finish(&op->heartbeat_reply, &op->status, op);
    ++inflight;
  };
  auto write_metrics = [&](Worker& w) {
    if (!w.stream_ready || w.stream_closed) return;
    if (w.write_in_flight) {
      ++w.writes_skipped;  // the previous batch is still on its way: a real worker queues it
      return;
    }
    v1::MetricsBatch batch;
    batch.set_job_id("load");
    batch.set_rank(w.rank);
    batch.set_generation(w.generation);
    auto* s = batch.add_steps();
    s->set_step(++w.step);
    static const char* keys[] = {"loss", "grad_norm", "lr", "tokens_per_second", "step_time", "mfu", "update_ratio",
                                 "tokens_seen", "skipped", "val_loss", "layer_grad_norm.0", "layer_grad_norm.1",
                                 "layer_grad_norm.2", "layer_grad_norm.3", "layer_grad_norm.4", "layer_grad_norm.5"};
    for (int k = 0; k < 16; ++k) (*s->mutable_values())[keys[k]] = 1.0 / (1.0 + static_cast<double>(w.step + k));
    w.write_in_flight = true;
    auto* op = new Op{Op::kWrite, &w, Clock::now()};
    w.stream->Write(batch, op);
    ++w.batches_written;
    ++inflight;
  };

  // WritesDone then Finish (only one write may be outstanding on a stream: called when none is).
  std::function<void(Worker&)> close_stream = [&](Worker& w) {
    if (w.stream_ready && !w.stream_closed) {
      w.stream_closed = true;
      auto* op = new Op{Op::kWritesDone, &w, Clock::now()};
      w.stream->WritesDone(op);
      ++inflight;
    } else if (!w.stream_closed) {
      w.stream_closed = true;
      ++streams_finished;
    } else {
      ++streams_finished;  // broken earlier
    }
  };
  // A heartbeat stream whose write or read failed: over (and counted as finished), the error kept.
  auto beat_stream_broke = [&](Worker& w, const char* what) {
    w.beat_closed = w.beat_finished = true;
    ++beat_streams_finished;
    lat["heartbeat"].error(grpc::Status(grpc::StatusCode::UNAVAILABLE, what));
  };
  // The heartbeat stream likewise, once its last beat is answered.
  auto close_beat_stream = [&](Worker& w) {
    if (o.unary_heartbeats) return;
    if (w.beat_ready && !w.beat_closed) {
      w.beat_closed = true;
      w.beat_stream->WritesDone(new Op{Op::kBeatWritesDone, &w, Clock::now()});
      ++inflight;
    } else if (!w.beat_finished) {  // never opened, or broken earlier
      w.beat_closed = w.beat_finished = true;
      ++beat_streams_finished;
    }
  };

  // Drive: each worker's beat and batch are due once a second, phases spread over the second.
  using Due = std::pair<Clock::time_point, int>;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due;
  Clock::time_point steady_start{}, measure_start{}, end{};
  double cpu_start = 0, cpu_used = 0;
  std::vector<std::map<std::string, double>> samples;
  Latencies scrape_ms, status_ms;
  std::vector<long> scrape_bytes;
  std::atomic<bool> sampler_stop{false};
  std::thread sampler;
  bool registration_done = false;

  auto handle = [&](Op* op, bool ok) {
    --inflight;
    Worker& w = *op->worker;
    switch (op->kind) {
      case Op::kRegister:
        lat["register"].add(ms_since(op->start));
        if (!ok || !op->status.ok()) {
          lat["register"].error(op->status);
        } else {
          w.rank = op->register_reply.rank();
          w.generation = op->register_reply.generation();
          ++registered;
          // Open the metrics stream now, as keel-worker's sender does.
          auto* start_op = new Op{Op::kStreamStart, &w, Clock::now()};
          w.stream = w.stub->PrepareAsyncReportMetrics(&w.stream_ctx, &w.stream_ack, &cq);
          w.stream->StartCall(start_op);
          ++inflight;
          if (!o.unary_heartbeats) {  // and the heartbeat stream, as keel-worker's heartbeat thread does
            w.beat_stream = w.stub->PrepareAsyncHeartbeatStream(&w.beat_ctx, &cq);
            w.beat_stream->StartCall(new Op{Op::kBeatStreamStart, &w, Clock::now()});
            ++inflight;
          }
        }
        break;
      case Op::kBeatStreamStart:
        w.beat_ready = ok;
        if (!ok) lat["heartbeat"].error(grpc::Status(grpc::StatusCode::UNAVAILABLE, "heartbeat stream did not start"));
        break;
      case Op::kBeatWrite:
        if (ok) {
          w.beat_stream->Read(&w.beat_reply, new Op{Op::kBeatRead, &w, op->start});
          ++inflight;
          break;
        }
        w.heartbeat_in_flight = false;
        beat_stream_broke(w, "heartbeat stream broke (write)");
        break;
      case Op::kBeatRead:
        w.heartbeat_in_flight = false;
        if (!ok) {
          beat_stream_broke(w, "heartbeat stream broke (read)");
        } else if (measuring) {
          lat["heartbeat"].add(ms_since(w.beat_sent));
        }
        if (w.closing) close_beat_stream(w);
        break;
      case Op::kBeatWritesDone: {
        auto* fin = new Op{Op::kBeatStreamFinish, &w, Clock::now()};
        w.beat_stream->Finish(&fin->status, fin);
        ++inflight;
        break;
      }
      case Op::kBeatStreamFinish:
        w.beat_finished = true;
        ++beat_streams_finished;
        if (!op->status.ok()) lat["heartbeat"].error(op->status);
        break;
      case Op::kHeartbeat:
        w.heartbeat_in_flight = false;
        if (!ok || !op->status.ok()) {
          if (measuring) lat["heartbeat"].error(op->status);
        } else if (measuring) {
          lat["heartbeat"].add(ms_since(op->start));
        }
        break;
      case Op::kStreamStart:
        w.stream_ready = ok;
        if (!ok) lat["metrics_write"].error(grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream did not start"));
        break;
      case Op::kWrite:
        w.write_in_flight = false;
        if (!ok) {
          w.stream_closed = true;
          lat["metrics_write"].error(grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream broke"));
        } else if (measuring) {
          lat["metrics_write"].add(ms_since(op->start));
        }
        if (w.closing) close_stream(w);  // its last write is through: close it now
        break;
      case Op::kWritesDone: {
        auto* fin = new Op{Op::kStreamFinish, &w, Clock::now()};
        w.stream->Finish(&fin->status, fin);
        ++inflight;
        break;
      }
      case Op::kStreamFinish:
        ++streams_finished;
        if (!op->status.ok()) lat["metrics_stream"].error(op->status);
        break;
      case Op::kShutdown:
        ++shut_down;
        lat["shutdown"].add(ms_since(op->start));
        if (!ok || !op->status.ok()) lat["shutdown"].error(op->status);
        break;
    }
    delete op;
  };

  bool phase_steady = false, phase_closing = false, phase_shutdown = false;
  for (;;) {
    void* tag = nullptr;
    bool ok = false;
    const auto next = !due.empty() ? due.top().first : Clock::now() + std::chrono::milliseconds(20);
    const auto status = cq.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + (next - Clock::now()));
    if (status == grpc::CompletionQueue::GOT_EVENT) handle(static_cast<Op*>(tag), ok);
    if (status == grpc::CompletionQueue::SHUTDOWN) break;
    const auto now = Clock::now();

    if (!registration_done && registered + static_cast<int>(lat["register"].errors) == o.workers) {
      registration_done = true;
      if (registered < o.workers) break;
      lat["register_all"].add(ms_since(register_start));
      steady_start = now;
      measure_start = now + std::chrono::milliseconds(static_cast<int64_t>(o.warmup_seconds * 1000));
      end = measure_start + std::chrono::milliseconds(static_cast<int64_t>(o.seconds * 1000));
      for (int i = 0; i < o.workers; ++i)
        due.push({now + std::chrono::microseconds(static_cast<int64_t>(1e6 * i / o.workers)), i});
      phase_steady = true;
      sampler = std::thread([&] {
        // Every second: the coordinator's memory; every 5 s: a /metrics scrape; and JobStatus.
        grpc::ChannelArguments args;
        args.SetInt("keel.load.connection", -1);
        args.SetMaxReceiveMessageSize(64 << 20);
        auto stub = v1::Coordinator::NewStub(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
        int tick = 0;
        while (!sampler_stop) {
          std::this_thread::sleep_for(std::chrono::seconds(1));
          if (Clock::now() < measure_start) continue;
          samples.push_back(proc_status(coordinator.pid));
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
          v1::JobStatusRequest req;
          req.set_job_id("load");
          v1::JobStatusReply reply;
          const auto t = Clock::now();
          const auto s = stub->JobStatus(&ctx, req, &reply);
          if (s.ok()) status_ms.add(ms_since(t));
          else status_ms.error(s);
          if (tick++ % 5 == 0) {
            const auto [ms, bytes] = scrape(metrics);
            scrape_ms.add(ms);
            scrape_bytes.push_back(bytes);
          }
        }
      });
    }
    if (phase_steady && !measuring && now >= measure_start) {
      measuring = true;
      cpu_start = cpu_seconds(coordinator.pid);
    }
    while (phase_steady && !due.empty() && due.top().first <= now) {
      auto [t, i] = due.top();
      due.pop();
      start_heartbeat(workers[i]);
      write_metrics(workers[i]);
      if (now < end) due.push({t + std::chrono::seconds(1), i});
    }
    if (phase_steady && due.empty() && !phase_closing) {
      // The window is over: record the CPU, close every stream (Finish returns once the coordinator
      // processed every batch), then shut every rank down.
      phase_closing = true;
      measuring = false;
      cpu_used = cpu_seconds(coordinator.pid) - cpu_start;
      sampler_stop = true;
      for (auto& w : workers) {
        w.closing = true;
        if (!w.write_in_flight) close_stream(w);  // otherwise once that write completes
        if (!w.heartbeat_in_flight) close_beat_stream(w);  // likewise once its beat is answered
      }
    }
    if (phase_closing && !phase_shutdown && streams_finished == o.workers &&
        (o.unary_heartbeats || beat_streams_finished == o.workers) &&
        std::none_of(workers.begin(), workers.end(), [](const Worker& w) { return w.heartbeat_in_flight || w.write_in_flight; })) {
      phase_shutdown = true;
      break;
    }
  }
  if (sampler.joinable()) {
    sampler_stop = true;
    sampler.join();
  }

  // What the coordinator saw, before the ranks leave.
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto stub = v1::Coordinator::NewStub(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  v1::JobStatusReply status;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::JobStatusRequest req;
    req.set_job_id("load");
    stub->JobStatus(&ctx, req, &status);
  }
  uint64_t received = 0, sent = 0, skipped = 0;
  int alive = 0;
  for (const auto& r : status.ranks()) {
    received += r.metrics_steps_received();
    alive += r.alive() ? 1 : 0;
  }
  for (const auto& w : workers) {
    sent += w.batches_written;
    skipped += w.writes_skipped;
  }

  // Orderly end: every rank shuts down with code 0, so the coordinator exits 0.
  for (auto& w : workers) {
    if (w.rank < 0) continue;
    auto* op = new Op{Op::kShutdown, &w, Clock::now()};
    op->ctx = deadline_ctx(30);
    v1::ShutdownRequest req;
    req.set_job_id("load");
    req.set_rank(w.rank);
    req.set_generation(w.generation);
    req.set_reason("load test done");
    op->ack_reader = w.stub->PrepareAsyncShutdown(op->ctx.get(), req, &cq);
    op->ack_reader->StartCall();
    op->ack_reader->Finish(&op->ack, &op->status, op);
    ++inflight;
  }
  while (inflight > 0) {
    void* tag = nullptr;
    bool ok = false;
    if (cq.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + std::chrono::seconds(30)) !=
        grpc::CompletionQueue::GOT_EVENT)
      break;
    handle(static_cast<Op*>(tag), ok);
  }
  const int coordinator_exit = coordinator.wait_exit(30000);
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) delete static_cast<Op*>(tag);

  double rss_max = 0, hwm = 0, threads_max = 0;
  for (auto& s : samples) {
    rss_max = std::max(rss_max, s["VmRSS"]);
    hwm = std::max(hwm, s["VmHWM"]);
    threads_max = std::max(threads_max, s["Threads"]);
  }
  nlohmann::json report = {
      {"workers", o.workers},
      {"connections", connections},
      {"measured_seconds", o.seconds},
      {"register", lat["register"].summary()},
      {"rendezvous_ms", lat["register_all"].ms.empty() ? -1.0 : lat["register_all"].ms[0]},
      {"heartbeat", lat["heartbeat"].summary()},
      {"metrics_write", lat["metrics_write"].summary()},
      {"job_status", status_ms.summary()},
      {"shutdown", lat["shutdown"].summary()},
      {"metrics_scrape", scrape_ms.summary()},
      {"metrics_scrape_bytes", scrape_bytes.empty() ? 0 : scrape_bytes.back()},
      {"coordinator_cpu_cores", cpu_used / o.seconds},
      {"coordinator_rss_mib", rss_max / 1024.0},
      {"coordinator_rss_idle_mib", idle_rss_kib / 1024.0},
      {"coordinator_hwm_mib", hwm / 1024.0},
      {"coordinator_threads", threads_max},
      {"ranks_alive", alive},
      {"ranks_reported", status.ranks_size()},
      {"batches_sent", sent},
      {"batches_received", received},
      {"batches_not_sent_previous_in_flight", skipped},
      {"stream_errors", lat["metrics_stream"].errors},
      {"coordinator_exit_code", coordinator_exit},
  };
  if (!o.json_out.empty()) std::ofstream(o.json_out) << report.dump() << "\n";
  auto row = [&](const char* name, const nlohmann::json& j) {
    std::printf("  %-14s n=%-7s p50 %8.2f  p95 %8.2f  p99 %8.2f  max %8.2f ms  errors %s\n", name,
                j["count"].dump().c_str(), j.value("p50_ms", 0.0), j.value("p95_ms", 0.0), j.value("p99_ms", 0.0),
                j.value("max_ms", 0.0), j["errors"].dump().c_str());
  };
  std::printf("%d simulated workers (%d connections), %.0f s measured after %.0f s warm-up\n", o.workers, connections,
              o.seconds, o.warmup_seconds);
  std::printf("  rendezvous of all %d: %.0f ms\n", o.workers, report["rendezvous_ms"].get<double>());
  row("Register", report["register"]);
  row("Heartbeat", report["heartbeat"]);
  row("metrics Write", report["metrics_write"]);
  row("JobStatus", report["job_status"]);
  row("/metrics", report["metrics_scrape"]);
  std::printf("  coordinator: %.2f cores, RSS %.1f MiB (idle %.1f, peak %.1f), %.0f threads; /metrics %ld bytes\n",
              report["coordinator_cpu_cores"].get<double>(), rss_max / 1024.0, idle_rss_kib / 1024.0, hwm / 1024.0,
              threads_max, scrape_bytes.empty() ? 0L : scrape_bytes.back());
  std::printf("  ranks alive %d/%d, metrics batches received %llu of %llu sent (%llu not sent: previous in flight), "
              "coordinator exit %d\n",
              alive, o.workers, static_cast<unsigned long long>(received), static_cast<unsigned long long>(sent),
              static_cast<unsigned long long>(skipped), coordinator_exit);
  const bool healthy = registered == o.workers && alive == o.workers && received == sent &&
                       lat["heartbeat"].errors == 0 && lat["metrics_write"].errors == 0 &&
                       lat["metrics_stream"].errors == 0 && status_ms.errors == 0 && coordinator_exit == 0;
  if (!healthy) std::printf("  FAILED: a call failed, a rank was lost or a batch went missing\n");
  return healthy ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  CLI::App app{"keel-load-coordinator: N simulated workers against a real keel-coordinator"};
  Options o;
  app.add_option("--coordinator", o.coordinator, "path of keel-coordinator")->required();
  app.add_option("--workers", o.workers, "simulated workers (the job's world size)")->capture_default_str()
      ->check(CLI::Range(1, 65536));
  app.add_option("--seconds", o.seconds, "measured seconds of steady state")->capture_default_str()
      ->check(CLI::Range(1.0, 3600.0));
  app.add_option("--warmup", o.warmup_seconds, "seconds of steady state before measuring")->capture_default_str();
  app.add_option("--connections", o.connections, "gRPC connections shared by the workers (0: one each)")
      ->capture_default_str();
  app.add_option("--register-timeout", o.register_timeout, "seconds the rendezvous may take")->capture_default_str();
  app.add_flag("--unary-heartbeats", o.unary_heartbeats,
               "one Heartbeat call per beat instead of keel-worker's HeartbeatStream (for comparison)");
  app.add_option("--json", o.json_out, "write the figures as one JSON object to this file");
  CLI11_PARSE(app, argc, argv);
  keel::coord::configure_grpc_runtime();  // the generator shares the machine: same runtime cost as workers
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "keel-load-coordinator: " << e.what() << "\n";
    return 1;
  }
}
