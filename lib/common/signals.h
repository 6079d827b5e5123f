#pragma once

#include <signal.h>

namespace sluice {

// Blocks SIGINT and SIGTERM in the calling thread, so that every thread started afterwards
// (gRPC's and Asio's included) inherits the mask and the main thread alone takes them with
// WaitForTerminationSignal. Call it first thing in main. SIGPIPE is ignored: a peer that
// goes away is an error code on the socket, not the end of the process.
sigset_t BlockTerminationSignals();

// Waits for SIGINT or SIGTERM (blocked by BlockTerminationSignals); returns which.
int WaitForTerminationSignal(const sigset_t& signals);

}  // namespace sluice
