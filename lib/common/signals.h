#pragma once

#include <signal.h>

#include <initializer_list>

namespace sluice {

// Blocks SIGINT and SIGTERM, and the signals in `also` (the gateway's SIGUSR1), in the calling
// thread, so that every thread started afterwards (gRPC's and Asio's included) inherits the
// mask and the main thread alone takes them with WaitForSignal or WaitForTerminationSignal.
// Call it first thing in main. SIGPIPE is ignored: a peer that goes away is an error code on
// the socket, not the end of the process.
sigset_t BlockTerminationSignals(std::initializer_list<int> also = {});

// Waits for SIGINT or SIGTERM (blocked by BlockTerminationSignals); returns which. Any other
// signal of `signals` that comes meanwhile is taken and ignored.
int WaitForTerminationSignal(const sigset_t& signals);

// Waits for any signal of `signals` (blocked by BlockTerminationSignals); returns which.
int WaitForSignal(const sigset_t& signals);

}  // namespace sluice
