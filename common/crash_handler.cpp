// Crash reporting (see crash_handler.h). Not strictly async-signal-safe (dladdr, snprintf): it runs
// only when the process is already dying, and says as much as it can.
#include "common/crash_handler.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>

namespace keel {
namespace {

void write_line(const char* text) {
  if (::write(STDERR_FILENO, text, std::strlen(text)) < 0) return;
}

void describe_address(const char* label, void* address) {
  char line[512];
  Dl_info info{};
  if (address && ::dladdr(address, &info) && info.dli_fname) {
    const auto offset = reinterpret_cast<uintptr_t>(address) - reinterpret_cast<uintptr_t>(info.dli_fbase);
    std::snprintf(line, sizeof(line), "  %s %p = %s+0x%zx (%s)\n", label, address, info.dli_fname,
                  static_cast<size_t>(offset), info.dli_sname ? info.dli_sname : "?");
  } else {
    std::snprintf(line, sizeof(line), "  %s %p\n", label, address);
  }
  write_line(line);
}

void on_fatal_signal(int signal_number, siginfo_t* info, void* context) {
  char line[256];
  std::snprintf(line, sizeof(line), "\nkeel: fatal signal %d (%s), fault address %p\n", signal_number,
                strsignal(signal_number), info ? info->si_addr : nullptr);
  write_line(line);
#if defined(__x86_64__)
  if (context) {
    auto* uc = static_cast<ucontext_t*>(context);
    void* pc = reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RIP]);
    describe_address("pc", pc);
    // A call through a null pointer leaves the caller's return address on top of the stack.
    void** sp = reinterpret_cast<void**>(uc->uc_mcontext.gregs[REG_RSP]);
    if (sp) describe_address("return address at sp", *sp);
  }
#endif
  void* frames[64];
  const int depth = ::backtrace(frames, 64);
  write_line("  backtrace:\n");
  for (int i = 0; i < depth; ++i) describe_address("   ", frames[i]);
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

}  // namespace

void install_crash_handler() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  struct sigaction action {};
  action.sa_sigaction = on_fatal_signal;
  action.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  for (int s : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) ::sigaction(s, &action, nullptr);
}

}  // namespace keel
