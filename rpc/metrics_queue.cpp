// The worker's metrics path (see coordinator_client.h): report_*_async push onto a bounded queue
// under a mutex and return; one background thread (default stack size) drains the queue into a
// long-lived ReportMetrics client stream, so the training step never waits on the network.
#include "rpc/coordinator_client_impl.h"

namespace keel::coord {

void CoordinatorClient::Impl::push(Item item) {
  {
    std::lock_guard<std::mutex> lock(q_mu);
    if (queue.size() >= opts.metrics_queue_capacity) {  // keep the newest: they matter most live
      queue.pop_front();
      ++dropped;
    }
    queue.push_back(std::move(item));
  }
  q_cv.notify_one();
}

void CoordinatorClient::report_metrics_async(int64_t step, std::map<std::string, double> values) {
  if (step > impl_->step) impl_->step = step;
  Impl::Item item;
  item.step = step;
  item.values = std::move(values);
  impl_->push(std::move(item));
}

void CoordinatorClient::report_event_async(const std::string& kind, int64_t step,
                                           const std::string& json_evidence, const std::string& action) {
  Impl::Item item;
  item.is_event = true;
  item.step = step;
  item.kind = kind;
  item.evidence = json_evidence;
  item.action = action;
  impl_->push(std::move(item));
}

uint64_t CoordinatorClient::metrics_dropped() const {
  return impl_->dropped;
}

bool CoordinatorClient::flush_metrics(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->q_mu);
  if (!impl_->sender.joinable()) return impl_->queue.empty();  // not registered: nothing can be sent
  const uint64_t mine = ++impl_->flush_requested;
  impl_->q_cv.notify_all();
  return impl_->q_cv.wait_for(lock, timeout, [&] { return impl_->flush_done >= mine || impl_->q_stop; });
}

void CoordinatorClient::Impl::close_stream(std::unique_ptr<grpc::ClientWriter<v1::MetricsBatch>>& stream) {
  if (!stream) return;
  stream->WritesDone();
  // Finish returns after the coordinator processed every batch. A refusal (say, a stale generation)
  // only loses metrics; the heartbeat thread is what turns such refusals into a failed job.
  stream->Finish();
  stream.reset();
  std::lock_guard<std::mutex> lock(stream_mu);
  stream_ctx.reset();
}

// Drains the queue into one long-lived client stream. A broken stream loses the batch in flight
// (counted as dropped) and is reopened after a short pause, so a coordinator hiccup costs metrics,
// never training time.
void CoordinatorClient::Impl::sender_loop() {
  std::unique_ptr<grpc::ClientWriter<v1::MetricsBatch>> stream;
  v1::Ack ack;
  std::unique_lock<std::mutex> lock(q_mu);
  for (;;) {
    q_cv.wait(lock, [&] { return q_stop || !queue.empty() || flush_done < flush_requested; });
    if (q_stop) break;
    if (queue.empty()) {  // a flush was asked for and everything is sent: close the stream
      const uint64_t target = flush_requested;
      lock.unlock();
      close_stream(stream);
      lock.lock();
      flush_done = target;
      q_cv.notify_all();
      continue;
    }
    v1::MetricsBatch batch;
    batch.set_job_id(opts.job_id);
    batch.set_rank(rank);
    batch.set_generation(generation);
    size_t n = 0;
    while (!queue.empty() && n < opts.max_items_per_batch) {
      Item& it = queue.front();
      if (it.is_event) {
        auto* e = batch.add_events();
        e->set_kind(it.kind);
        e->set_step(it.step);
        e->set_json_evidence(it.evidence);
        e->set_action(it.action);
      } else {
        auto* s = batch.add_steps();
        s->set_step(it.step);
        s->mutable_values()->insert(it.values.begin(), it.values.end());
      }
      queue.pop_front();
      ++n;
    }
    lock.unlock();
    if (!stream) {
      auto ctx = std::make_shared<grpc::ClientContext>();
      add_token(*ctx, token);
      {
        std::lock_guard<std::mutex> g(stream_mu);
        stream_ctx = ctx;
      }
      stream = stub->ReportMetrics(ctx.get(), &ack);
    }
    if (!stream->Write(batch)) {
      dropped += n;
      close_stream(stream);
      lock.lock();
      q_cv.wait_for(lock, std::chrono::milliseconds(500), [&] { return q_stop; });
      continue;
    }
    lock.lock();
  }
  lock.unlock();
  if (stream) {
    std::lock_guard<std::mutex> g(stream_mu);
    if (stream_ctx) stream_ctx->TryCancel();
  }
  if (stream) stream->Finish();
}

}  // namespace keel::coord
