// Fuzz target: every RPC of the coordinator (coordinator/coordinator_service.h), called on the
// service directly with request messages decoded from the input (protobuf wire format, so the
// fuzzer also explores the parser), against a job of 1 or 2 ranks whose rendezvous the harness
// completes first. Fields that gate deep paths (job id, rank, generation) are set to the valid value
// or left fuzzed, as the input decides. Every call must end in a status (OK or a refusal), never a
// crash, hang or exception, and the job's invariants must hold afterwards: latest committed step =
// the newest committed one, generation never goes back, every rank reported.
// Differences from a real server, so that nothing blocks: blocking waits are capped (rendezvous
// timeout 5 ms, CommitCheckpoint wait_seconds <= 0.005 s); the callback methods, Heartbeat and
// HeartbeatStream (each beat of the stream is one such request) and ReportMetrics (a stream), are
// fed to JobState::heartbeat / record_metrics as their handlers do.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>
#include <thread>

#include "coordinator/coordinator_service.h"

namespace {
namespace v1 = keel::v1;
using keel::coord::CoordinatorService;
using keel::coord::JobOptions;
using keel::coord::JobState;

template <typename Message>
void decode(FuzzedDataProvider& in, Message& m) {
  const std::string bytes = in.ConsumeRandomLengthString(256);
  m.ParseFromString(bytes);  // garbage is fine: a failed parse leaves a partial message
}

std::string job_id(FuzzedDataProvider& in, const std::string& fuzzed) { return in.ConsumeBool() ? "job" : fuzzed; }

}  // namespace

// Requests with invalid UTF-8 in string fields fail to parse, as on a real server; protobuf logs
// each one, which would drown the fuzzer's output.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  JobOptions options;
  options.job_id = "job";
  options.world_size = in.ConsumeIntegralInRange(1, 2);
  options.tp_size = options.world_size == 2 && in.ConsumeBool() ? 2 : 1;
  options.rendezvous_timeout_seconds = 0.005;
  options.heartbeat_timeout_seconds = 1000;
  JobState job(options);
  CoordinatorService service(job, "");

  // The rendezvous: all ranks register at once (as real workers do).
  std::vector<std::thread> threads;
  std::vector<int64_t> generations(options.world_size, 0);
  for (int r = 0; r < options.world_size; ++r) {
    threads.emplace_back([&, r] {
      keel::coord::WorkerInfo w;
      w.host = "h";
      w.local_rank = r;
      w.requested_rank = r;
      try {
        generations[r] = job.register_worker("job", w, keel::coord::SteadyClock::now() + std::chrono::seconds(10)).generation;
      } catch (const keel::coord::JobError&) {
      }
    });
  }
  for (auto& t : threads) t.join();
  const int64_t generation = generations[0];
  int64_t last_generation = job.snapshot().generation;

  for (int op = 0; op < 64 && in.remaining_bytes() > 0; ++op) {
    grpc::ServerContext ctx;
    grpc::Status status;
    switch (in.ConsumeIntegralInRange(0, 7)) {
      case 0: {
        v1::RegisterRequest req;
        decode(in, req);
        req.set_job_id(job_id(in, req.job_id()));
        v1::RegisterReply reply;
        status = service.Register(&ctx, &req, &reply);
        break;
      }
      case 1: {
        v1::HeartbeatRequest req;
        decode(in, req);
        req.set_job_id(job_id(in, req.job_id()));
        if (in.ConsumeBool()) req.set_generation(generation);
        if (in.ConsumeBool()) req.set_rank(in.ConsumeIntegralInRange(0, options.world_size - 1));
        try {  // what the (callback) Heartbeat handler does
          job.heartbeat(req.job_id(), req.rank(), req.generation(), req.step());
        } catch (const keel::coord::JobError&) {
        }
        break;
      }
      case 2: {
        v1::ShardWritten req;
        decode(in, req);
        req.set_job_id(job_id(in, req.job_id()));
        if (in.ConsumeBool()) req.set_generation(generation);
        if (in.ConsumeBool()) req.set_rank(in.ConsumeIntegralInRange(0, options.world_size - 1));
        if (in.ConsumeBool()) req.set_shard_name("tp" + std::to_string(req.rank()));
        if (in.ConsumeBool()) {  // a sharded optimizer's commit: every DP rank writes "tp<r>.dp<d>"
          req.set_every_dp_rank(true);
          req.set_shard_name("tp0.dp" + std::to_string(req.rank()));
        }
        if (req.wait_seconds() > 0.005) req.set_wait_seconds(0.005);  // NaN and negatives go through
        v1::CommitReply reply;
        status = service.CommitCheckpoint(&ctx, &req, &reply);
        break;
      }
      case 3: {
        v1::LatestRequest req;
        decode(in, req);
        req.set_job_id(job_id(in, req.job_id()));
        v1::LatestReply reply;
        status = service.LatestCommitted(&ctx, &req, &reply);
        if (status.ok() && reply.step() != job.latest_committed("job")) __builtin_trap();
        break;
      }
      case 4: {
        v1::JobStatusRequest req;
        decode(in, req);
        req.set_job_id(job_id(in, req.job_id()));
        v1::JobStatusReply reply;
        status = service.JobStatus(&ctx, &req, &reply);
        break;
      }
      case 5: {
        v1::ShutdownRequest req;
        decode(in, req);
        req.set_job_id(job_id(in, req.job_id()));
        if (in.ConsumeBool()) req.set_generation(generation);
        if (in.ConsumeBool()) req.set_rank(in.ConsumeIntegralInRange(0, options.world_size - 1));
        v1::Ack ack;
        status = service.Shutdown(&ctx, &req, &ack);
        break;
      }
      case 6: {  // one ReportMetrics batch, as its handler passes it on
        v1::MetricsBatch batch;
        decode(in, batch);
        batch.set_job_id(job_id(in, batch.job_id()));
        if (in.ConsumeBool()) batch.set_generation(generation);
        std::vector<keel::coord::StepRecord> steps;
        for (const auto& s : batch.steps()) steps.push_back({s.step(), {s.values().begin(), s.values().end()}});
        std::vector<keel::coord::EventRecord> events;
        for (const auto& e : batch.events()) events.push_back({batch.rank(), e.step(), e.kind(), e.json_evidence(), e.action()});
        try {
          job.record_metrics(batch.job_id(), batch.rank(), batch.generation(), steps, events);
        } catch (const keel::coord::JobError&) {
        }
        break;
      }
      case 7:
        job.check_heartbeats();
        break;
    }
    if (status.error_code() == grpc::StatusCode::INTERNAL) __builtin_trap();  // an unexpected exception
    const auto snap = job.snapshot();
    if (snap.generation < last_generation) __builtin_trap();
    last_generation = snap.generation;
    const auto committed = job.committed_steps();
    if (snap.latest_committed_step != (committed.empty() ? -1 : committed.back())) __builtin_trap();
  }
  job.close();
  return 0;
}
