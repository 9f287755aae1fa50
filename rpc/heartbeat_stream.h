// Private to the coordinator client: one open HeartbeatStream (the worker's side of it). The
// heartbeat thread writes a beat and waits, up to a timeout, for its reply; a beat that gets no
// reply in time cancels the stream (a frozen or unreachable coordinator must not block the thread,
// which is how a worker notices it lost the coordinator). After any failure the caller drops the
// stream and opens a new one for the next beat. Uses gRPC's callback client API so the wait can
// time out; includes generated gRPC headers, so worker code never sees it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <mutex>
#include <string>

#include "keel/v1/coordinator.grpc.pb.h"

namespace keel::coord {

class HeartbeatStreamCall final
    : public grpc::ClientBidiReactor<keel::v1::HeartbeatRequest, keel::v1::HeartbeatReply> {
 public:
  // Opens the stream (the token, if any, goes in the stream's metadata once).
  HeartbeatStreamCall(keel::v1::Coordinator::Stub& stub, const std::string& token);
  // Closes the stream (half-close, then cancel if the coordinator does not end it within 2 s) and
  // waits until gRPC is done with it.
  ~HeartbeatStreamCall() override;

  // Sends `request` and waits for its reply. OK: `reply` is filled. Otherwise the stream is over:
  // the coordinator's refusal (FAILED_PRECONDITION, NOT_FOUND, UNAUTHENTICATED...), UNAVAILABLE
  // (transport), or DEADLINE_EXCEEDED (no reply within `timeout_seconds`; the stream is cancelled).
  grpc::Status beat(const keel::v1::HeartbeatRequest& request, keel::v1::HeartbeatReply& reply,
                    double timeout_seconds);

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  grpc::ClientContext ctx_;
  std::mutex mu_;
  std::condition_variable cv_;
  keel::v1::HeartbeatRequest request_;
  keel::v1::HeartbeatReply reply_;
  bool have_reply_ = false, done_ = false;
  grpc::Status status_;
};

}  // namespace keel::coord
