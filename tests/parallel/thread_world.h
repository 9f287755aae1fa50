// ThreadWorld: a fake Communicator world whose ranks are threads of one process, for testing the
// process-group logic without MPI. Only rank/size/split are real (split is a true rendezvous of all
// ranks); data collectives throw.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "parallel/communicator.h"

namespace keel::parallel::testing {

// State shared by the ranks of one fake communicator.
class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : size_(size), slots_(size), results_(size) {}
  int size() const { return size_; }

  // Collective: returns (new group, new rank) for `rank`, or (nullptr, -1) for a negative color.
  std::pair<std::shared_ptr<ThreadGroup>, int> split(int rank, int color, int key) {
    std::unique_lock<std::mutex> lock(mutex_);
    slots_[rank] = {color, key};
    const int generation = generation_;
    if (++arrived_ == size_) {
      std::vector<std::tuple<int, int, int>> order;  // color, key, old rank
      for (int r = 0; r < size_; ++r) order.emplace_back(slots_[r].first, slots_[r].second, r);
      std::sort(order.begin(), order.end());
      for (size_t i = 0; i < order.size();) {
        size_t j = i;
        while (j < order.size() && std::get<0>(order[j]) == std::get<0>(order[i])) ++j;
        std::shared_ptr<ThreadGroup> group;
        if (std::get<0>(order[i]) >= 0) group = std::make_shared<ThreadGroup>(static_cast<int>(j - i));
        for (size_t k = i; k < j; ++k) results_[std::get<2>(order[k])] = {group, group ? static_cast<int>(k - i) : -1};
        i = j;
      }
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
    return results_[rank];
  }

 private:
  int size_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::pair<int, int>> slots_;
  std::vector<std::pair<std::shared_ptr<ThreadGroup>, int>> results_;
  int arrived_ = 0;
  int generation_ = 0;
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  MemoryKind memory_kind() const override { return MemoryKind::kHost; }
  std::string backend() const override { return "thread-fake"; }
  void all_reduce(void*, size_t, DataType, ReduceOp) override { fail(); }
  void all_gather(const void*, void*, size_t, DataType) override { fail(); }
  void reduce_scatter(const void*, void*, size_t, DataType, ReduceOp) override { fail(); }
  void broadcast(void*, size_t, DataType, int) override { fail(); }
  void barrier() override { fail(); }
  void abort() override {}
  std::unique_ptr<Communicator> split(int color, int key) override {
    auto [group, rank] = group_->split(rank_, color, key);
    if (!group) return nullptr;
    return std::make_unique<ThreadCommunicator>(group, rank);
  }
  ThreadGroup* group() const { return group_.get(); }

 private:
  [[noreturn]] static void fail() { throw std::logic_error("ThreadCommunicator has no data collectives"); }
  std::shared_ptr<ThreadGroup> group_;
  int rank_;
};

}  // namespace keel::parallel::testing
