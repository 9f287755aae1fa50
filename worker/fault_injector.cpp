// Fault injection (see fault_injector.h).
#include "worker/fault_injector.h"

#include <limits>

#include "common/log.h"

namespace keel {
namespace {

// Checkpoint names of the faults (trainer_state.json "injections_done"). The LR spike has two: it
// fired (announced on its first step) and it is over (never applied again).
constexpr const char* kBadBatch = "bad_batch";
constexpr const char* kNanGrad = "nan_grad";
constexpr const char* kLrSpike = "lr_spike";
constexpr const char* kLrSpikeOver = "lr_spike_done";

}  // namespace

FaultInjector::FaultInjector(DebugConfig debug, int64_t seed, int64_t vocab_size, bool announce)
    : debug_(debug), seed_(seed), vocab_size_(vocab_size), announce_(announce) {}

bool FaultInjector::fires(const std::string& name, int64_t at_step, int64_t step) {
  if (at_step < 0 || step != at_step || fired_.count(name)) return false;
  fired_.insert(name);
  if (announce_) log::warn("FAULT INJECTION: " + name + " at step " + std::to_string(step));
  return true;
}

void FaultInjector::corrupt_batch(int64_t step, int64_t batch, int64_t seq, std::vector<int32_t>& inputs,
                                  std::vector<int32_t>& targets) {
  if (!fires(kBadBatch, debug_.inject_bad_batch_at, step)) return;
  auto generator = at::detail::createCPUGenerator(static_cast<uint64_t>(seed_ * 7919 + step));
  auto noise = torch::randint(0, vocab_size_, {batch * (seq + 1)}, generator, torch::kInt);  // (B*(T+1))
  auto tokens = noise.accessor<int32_t, 1>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < seq; ++t) {
      inputs[b * seq + t] = tokens[b * (seq + 1) + t];
      targets[b * seq + t] = tokens[b * (seq + 1) + t + 1];
    }
  }
}

void FaultInjector::poison_gradients(int64_t step, const std::vector<torch::Tensor>& params) {
  if (!fires(kNanGrad, debug_.inject_nan_grad_at, step)) return;
  torch::NoGradGuard no_grad;
  params[0].mutable_grad().fill_(std::numeric_limits<float>::quiet_NaN());
}

double FaultInjector::lr_factor(int64_t step) {
  if (lr_spike_over_) return 1.0;
  const double factor = debug_.lr_factor_at(step);
  if (factor == 1.0) return 1.0;
  fires(kLrSpike, debug_.inject_lr_spike_at, step);  // announced on its first step
  if (debug_.lr_factor_at(step + 1) == 1.0) lr_spike_over_ = true;
  return factor;
}

void FaultInjector::on_rollback() { lr_spike_over_ = true; }

nlohmann::json FaultInjector::to_json() const {
  std::set<std::string> names = fired_;
  if (lr_spike_over_) names.insert(kLrSpikeOver);
  return names;
}

void FaultInjector::from_json(const nlohmann::json& fired) {
  fired_ = fired.get<std::set<std::string>>();
  lr_spike_over_ = fired_.erase(kLrSpikeOver) > 0;
}

}  // namespace keel
