// Preemption flag and its signal handler (see preemption.h).
#include "common/preemption.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <thread>

#include "common/check.h"

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

// SIGINT: the handler counts and wakes the helper thread through a pipe (write is
// async-signal-safe); the thread runs the callback, which may take locks, log and write files.
std::atomic<int> g_interrupts{0};
int g_wake_fd = -1;
InterruptCallback g_on_interrupt = nullptr;

extern "C" void on_interrupt_signal(int) {
  const int saved_errno = errno;
  const int count = g_interrupts.fetch_add(1) + 1;
  if (count == 1) {
    int none = 0;
    g_signal.compare_exchange_strong(none, SIGINT);
    g_requested.store(true);
  }
  const char byte = 1;
  [[maybe_unused]] const ssize_t written = ::write(g_wake_fd, &byte, 1);
  errno = saved_errno;
}

void interrupt_thread(int read_fd) {
  for (int seen = 0;;) {
    char byte;
    const ssize_t n = ::read(read_fd, &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    // Every wake-up is one SIGINT; call back once per count so count 2 is never skipped.
    for (const int now = g_interrupts.load(); seen < now;) g_on_interrupt(++seen);
  }
}

}  // namespace

void install_interrupt_handler(InterruptCallback on_interrupt) {
  KEEL_CHECK(on_interrupt != nullptr && g_on_interrupt == nullptr, "install_interrupt_handler: called twice");
  struct sigaction current {};
  ::sigaction(SIGINT, nullptr, &current);
  if (current.sa_handler == SIG_IGN) return;
  int fds[2];
  KEEL_CHECK(::pipe(fds) == 0, "cannot create the interrupt pipe");
  g_wake_fd = fds[1];
  g_on_interrupt = on_interrupt;
  std::thread(interrupt_thread, fds[0]).detach();
  struct sigaction action {};
  action.sa_handler = on_interrupt_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &action, nullptr);
}

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
