#include "lib/common/signals.h"

#include <pthread.h>

namespace sluice {

sigset_t BlockTerminationSignals(std::initializer_list<int> also) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  for (int sig : also) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return signals;
}

int WaitForTerminationSignal(const sigset_t& signals) {
  for (;;) {
    const int sig = WaitForSignal(signals);
    if (sig == SIGINT || sig == SIGTERM) return sig;
  }
}

int WaitForSignal(const sigset_t& signals) {
  int sig = 0;
  sigwait(&signals, &sig);
  return sig;
}

}  // namespace sluice
