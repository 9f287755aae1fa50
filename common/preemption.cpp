// Preemption flag and its signal handler (see preemption.h).
#include "common/preemption.h"

#include <signal.h>

#include <atomic>

namespace keel::preemption {
namespace {

std::atomic<int> g_signal{0};
std::atomic<bool> g_requested{false};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
              "the signal handler needs lock-free atomics");

extern "C" void on_preemption_signal(int sig) {
  if (g_requested.load() && sig == SIGTERM) {
    // Asked twice: give up the graceful path.
    ::signal(SIGTERM, SIG_DFL);
    ::raise(SIGTERM);
    return;
  }
  int none = 0;
  g_signal.compare_exchange_strong(none, sig);
  g_requested.store(true);
}

}  // namespace

void install_handler(std::initializer_list<int> signals) {
  for (int sig : signals) {
    struct sigaction action {};
    action.sa_handler = on_preemption_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // a blocking read in the step must not fail with EINTR
    ::sigaction(sig, &action, nullptr);
  }
}

void install_handler() { install_handler({SIGTERM, SIGUSR1}); }

bool requested() { return g_requested.load(); }
int signal_number() { return g_signal.load(); }

void request(int signal_number) {
  int none = 0;
  g_signal.compare_exchange_strong(none, signal_number);
  g_requested.store(true);
}

}  // namespace keel::preemption
