// Preemption requests: a scheduler that wants its nodes back (Slurm on preemption or at the time
// limit, Kubernetes on eviction) sends SIGTERM; `keel train` forwards it to its workers (SIGUSR1
// through mpirun, which forwards only that kind of signal). The handler installed here only sets a
// process-wide flag; the training loop polls it at step boundaries, agrees on it across ranks,
// saves a checkpoint and exits with kExitPreempted (common/exit_codes.h) so the scheduler can requeue
// the job, which then resumes exactly. Torch-free and async-signal-safe.
#pragma once

#include <initializer_list>

namespace keel::preemption {

// Installs the flag-setting handler for `signals` (default SIGTERM and SIGUSR1). A second SIGTERM
// while a request is pending restores the default action and re-raises it: an operator who insists
// gets the process killed.
void install_handler(std::initializer_list<int> signals);
void install_handler();

// Ctrl-C on an interactive `keel train`: SIGINT becomes a preemption request like SIGTERM's (the
// step finishes, a checkpoint is saved), and `on_interrupt(count)` runs on a helper thread, never
// in the signal handler, for each SIGINT: count 1 to acknowledge, 2 (and more) when the user
// insists and wants the process gone now. The callback may block or end the process (_exit); it
// must not return to a program that expects to go on after count 2. A SIGINT that was ignored when
// this is called (a job started in the background by a non-interactive shell) stays ignored.
using InterruptCallback = void (*)(int count);
void install_interrupt_handler(InterruptCallback on_interrupt);

bool requested();       // a preemption signal arrived (or request() was called)
int signal_number();    // the first such signal, 0 when none
void request(int signal_number = 0);  // programmatic request (tests, launchers)

}  // namespace keel::preemption
