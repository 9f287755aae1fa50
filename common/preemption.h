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

bool requested();       // a preemption signal arrived (or request() was called)
int signal_number();    // the first such signal, 0 when none
void request(int signal_number = 0);  // programmatic request (tests, launchers)

}  // namespace keel::preemption
