// Private to the coordinator client: the state shared by coordinator_client.cpp (RPCs, heartbeats)
// and metrics_queue.cpp (the metrics queue and its streaming thread). Includes
// generated gRPC headers, so it is never installed or included by worker code.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "rpc/coordinator_client.h"
#include "keel/v1/coordinator.grpc.pb.h"

namespace keel::coord {
namespace v1 = keel::v1;

// Every call and stream of the client carries the shared token, if any, as the coordinator expects.
inline void add_token(grpc::ClientContext& ctx, const std::string& token) {
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
}

struct CoordinatorClient::Impl {
  std::string address, token;
  ClientOptions opts;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Coordinator::Stub> stub;

  // Set by register_worker; read by every later call.
  std::atomic<int> rank{-1};
  std::atomic<int64_t> generation{0};
  std::atomic<int64_t> step{-1};

  // Job state as the heartbeats saw it.
  mutable std::mutex state_mu;
  std::string state = "UNKNOWN", failure;
  std::atomic<bool> failed{false};

  std::mutex hb_mu;
  std::condition_variable hb_cv;
  bool hb_stop = false;
  std::thread hb_thread;

  // The metrics queue and its sender.
  struct Item {
    bool is_event = false;
    int64_t step = 0;
    std::map<std::string, double> values;
    std::string kind, evidence, action;
  };
  std::mutex q_mu;
  std::condition_variable q_cv;
  std::deque<Item> queue;
  bool q_stop = false;
  uint64_t flush_requested = 0, flush_done = 0;
  std::atomic<uint64_t> dropped{0};
  std::thread sender;
  std::mutex stream_mu;  // guards stream_ctx so the destructor can cancel a blocked stream
  std::shared_ptr<grpc::ClientContext> stream_ctx;

  void context(grpc::ClientContext& ctx, double timeout_seconds) const {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::duration_cast<std::chrono::system_clock::duration>(
                         std::chrono::duration<double>(timeout_seconds)));
    add_token(ctx, token);
  }
  [[noreturn]] void fail_rpc(const char* what, const grpc::Status& s) const {
    throw CoordinatorError(s.error_code(), std::string("coordinator ") + what + " at " + address +
                                               " failed: " + s.error_message());
  }
  void require_registered(const char* what) const {
    KEEL_CHECK(rank >= 0, "coordinator " << what << " before register_worker()");
  }
  void mark_failed(const std::string& message) {
    std::lock_guard<std::mutex> lock(state_mu);
    if (!failed) failure = message;
    failed = true;
  }

  void push(Item item);
  void heartbeat_loop(std::chrono::milliseconds interval);
  void sender_loop();
  void close_stream(std::unique_ptr<grpc::ClientWriter<v1::MetricsBatch>>& stream);
};

}  // namespace keel::coord
