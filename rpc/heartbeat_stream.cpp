// The worker's side of a HeartbeatStream (see client_heartbeat_stream.h).
#include "rpc/heartbeat_stream.h"

#include <chrono>

#include "rpc/coordinator_client_impl.h"

namespace keel::coord {

HeartbeatStreamCall::HeartbeatStreamCall(keel::v1::Coordinator::Stub& stub, const std::string& token) {
  add_token(ctx_, token);
  stub.async()->HeartbeatStream(&ctx_, this);
  StartCall();
}

HeartbeatStreamCall::~HeartbeatStreamCall() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!done_) {
    lock.unlock();
    StartWritesDone();  // the coordinator ends the stream when it reads the half-close
    lock.lock();
    if (!cv_.wait_for(lock, std::chrono::seconds(2), [&] { return done_; })) ctx_.TryCancel();
  }
  cv_.wait(lock, [&] { return done_; });  // OnDone always follows, after a cancel too
}

grpc::Status HeartbeatStreamCall::beat(const keel::v1::HeartbeatRequest& request, keel::v1::HeartbeatReply& reply,
                                       double timeout_seconds) {
  std::unique_lock<std::mutex> lock(mu_);
  if (done_) return status_.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "heartbeat stream closed") : status_;
  request_ = request;
  have_reply_ = false;
  lock.unlock();
  // One beat at a time: the previous read completed before this write, so each is alone in flight.
  StartWrite(&request_);
  StartRead(&reply_);
  lock.lock();
  const auto timeout = std::chrono::duration<double>(timeout_seconds);
  if (!cv_.wait_for(lock, timeout, [&] { return have_reply_ || done_; })) {
    lock.unlock();
    ctx_.TryCancel();
    lock.lock();
    cv_.wait(lock, [&] { return done_; });
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        "no heartbeat reply within " + std::to_string(timeout_seconds) + " s");
  }
  if (have_reply_) {
    reply = reply_;
    return grpc::Status::OK;
  }
  // The stream ended: a refusal carries its status; an orderly end without a reply is a lost link.
  return status_.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "the coordinator closed the heartbeat stream")
                      : status_;
}

void HeartbeatStreamCall::OnReadDone(bool ok) {
  if (!ok) return;  // the stream is over; OnDone brings the status
  std::lock_guard<std::mutex> lock(mu_);
  have_reply_ = true;
  cv_.notify_all();
}

void HeartbeatStreamCall::OnDone(const grpc::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  status_ = status;
  done_ = true;
  cv_.notify_all();
}

}  // namespace keel::coord
