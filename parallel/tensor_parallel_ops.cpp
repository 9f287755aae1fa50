// Tensor-parallel autograd functions (see tensor_parallel_ops.h).
#include "parallel/tensor_parallel_ops.h"

#include <cstdint>

#include "parallel/torch_adapter.h"

namespace keel::parallel {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The communicator travels through the autograd context as an integer (IValue has no raw pointers).
int64_t to_handle(Communicator& comm) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(&comm)); }
Communicator& from_handle(AutogradContext* ctx) {
  return *reinterpret_cast<Communicator*>(static_cast<intptr_t>(ctx->saved_data["comm"].toInt()));
}

torch::Tensor all_reduced(const torch::Tensor& x, Communicator& comm) {
  torch::Tensor summed = x.contiguous().clone();
  all_reduce(comm, summed, ReduceOp::kSum);
  return summed;
}

struct CopyToTensorParallel : public torch::autograd::Function<CopyToTensorParallel> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, int64_t comm) {
    ctx->saved_data["comm"] = comm;
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {all_reduced(grads[0], from_handle(ctx)), torch::Tensor()};
  }
};

struct ReduceFromTensorParallel : public torch::autograd::Function<ReduceFromTensorParallel> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, int64_t comm) {
    (void)ctx;
    return all_reduced(x, *reinterpret_cast<Communicator*>(static_cast<intptr_t>(comm)));
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    (void)ctx;
    return {grads[0], torch::Tensor()};
  }
};

struct VocabParallelCrossEntropy : public torch::autograd::Function<VocabParallelCrossEntropy> {
  // logits (N, Vl) float32, targets (N) int64 -> {() mean loss, () mean lse^2}.
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& targets,
                               int64_t vocab_start, int64_t comm_handle) {
    Communicator& comm = *reinterpret_cast<Communicator*>(static_cast<intptr_t>(comm_handle));
    const int64_t local_vocab = logits.size(1);
    // Numerically stable softmax over the full vocabulary: the global max of each row first.
    torch::Tensor row_max = std::get<0>(logits.max(/*dim=*/1)).contiguous();  // (N)
    all_reduce(comm, row_max, ReduceOp::kMax);
    torch::Tensor shifted = logits - row_max.unsqueeze(1);                    // (N, Vl)
    torch::Tensor exp = shifted.exp();
    torch::Tensor sum_exp = exp.sum(1).contiguous();                          // (N)
    all_reduce(comm, sum_exp, ReduceOp::kSum);
    // The target's shifted logit lives on exactly one rank; the others contribute zero.
    torch::Tensor local_target = targets - vocab_start;
    torch::Tensor owned = (local_target >= 0) & (local_target < local_vocab);  // (N) bool
    torch::Tensor index = local_target.clamp(0, local_vocab - 1);
    torch::Tensor target_logit =
        shifted.gather(1, index.unsqueeze(1)).squeeze(1) * owned.to(shifted.scalar_type());  // (N)
    target_logit = target_logit.contiguous();
    all_reduce(comm, target_logit, ReduceOp::kSum);
    torch::Tensor losses = sum_exp.log() - target_logit;  // (N)
    torch::Tensor lse = row_max + sum_exp.log();           // (N) the full row's log-partition
    ctx->save_for_backward({exp / sum_exp.unsqueeze(1), index, owned, lse});
    return {losses.mean(), (lse * lse).mean()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    torch::Tensor softmax = saved[0], index = saved[1], owned = saved[2], lse = saved[3];
    const double n = static_cast<double>(softmax.size(0));
    // d loss_i / d logit_ij = softmax_ij - [j == target_i], scaled by g / N; the z term adds
    // g_z * 2 lse_i softmax_ij / N.
    const torch::Tensor g = grads[0].defined() ? grads[0] : torch::zeros({}, softmax.options());
    torch::Tensor grad = softmax * g;
    if (grads[1].defined()) grad = grad + softmax * (2.0 * grads[1] * lse).unsqueeze(1);
    grad.scatter_add_(1, index.unsqueeze(1), -(owned.to(grad.scalar_type()) * g).unsqueeze(1));
    grad.div_(n);
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor copy_to_tensor_parallel(const torch::Tensor& x, Communicator& tp) {
  if (tp.size() == 1) return x;
  return CopyToTensorParallel::apply(x, to_handle(tp));
}

torch::Tensor reduce_from_tensor_parallel(const torch::Tensor& x, Communicator& tp) {
  if (tp.size() == 1) return x;
  return ReduceFromTensorParallel::apply(x, to_handle(tp));
}

VocabParallelLossTerms vocab_parallel_cross_entropy_terms(const torch::Tensor& logits, const torch::Tensor& targets,
                                                          int64_t vocab_start, Communicator& tp) {
  if (tp.size() == 1) {
    const auto fp32 = logits.to(torch::kFloat);
    const auto lse = torch::logsumexp(fp32, 1);  // (N)
    return {torch::nn::functional::cross_entropy(fp32, targets), (lse * lse).mean()};
  }
  const auto outputs = VocabParallelCrossEntropy::apply(logits.to(torch::kFloat), targets, vocab_start, to_handle(tp));
  return {outputs[0], outputs[1]};
}

torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                           int64_t vocab_start, Communicator& tp) {
  if (tp.size() == 1) return torch::nn::functional::cross_entropy(logits.to(torch::kFloat), targets);
  return vocab_parallel_cross_entropy_terms(logits, targets, vocab_start, tp).cross_entropy;
}

}  // namespace keel::parallel
