// Prints where the process died (signal, faulting address, the caller of a jump to a null pointer,
// and a symbolized backtrace with module offsets for addr2line) before re-raising the signal, so
// a crash in a month-long run leaves evidence in its log. Torch-free.
#pragma once

namespace keel {

// Installs handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT (once per process).
void install_crash_handler();

}  // namespace keel
