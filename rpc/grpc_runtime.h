// Process-wide settings for the gRPC runtime and the channel arguments every Keel gRPC endpoint
// uses, applied by every program that serves or calls gRPC (the coordinator server, the
// worker-side client, the load generator). All three are measured in docs/reliability.md (load).
//
// Why each one:
// - Debian builds Abseil without NDEBUG, so absl::Mutex runs its debug-mode deadlock detector on
//   every lock: each Lock/Unlock of every gRPC-internal mutex updates a global lock graph behind one
//   global spin lock. Under load that was the largest single cost in the coordinator (perf:
//   GraphCycles::GetId ~10% of all CPU with 4,096 simulated workers). Keel's own code does not use
//   absl::Mutex, so turning the detector off changes nothing but the cost.
// - HTTP/2 BDP probing sends a PING (and gets an ack, with timers) on connections that receive data,
//   to size flow-control windows for bulk transfers. Coordinator traffic is small messages at ~1 Hz
//   per connection, so with thousands of workers the probes cost as much as the traffic itself:
//   turning them off cut the coordinator's CPU at 4,096 workers from ~1.0 to ~0.7 cores.
// - Channelz keeps per-call and per-socket statistics for a debugging service Keel does not serve.
#pragma once

#include <grpcpp/grpcpp.h>

namespace keel::coord {

// Idempotent and thread-safe; call before the program serves or calls gRPC (the server does in
// start(), the client in its constructor).
void configure_grpc_runtime();

// The channel arguments above, for a client channel / for the server.
void tune_channel_arguments(grpc::ChannelArguments& args);
void tune_server_builder(grpc::ServerBuilder& builder);

}  // namespace keel::coord
