#include "gateway/upstream/dns_cache.h"

#include <netdb.h>
#include <sys/socket.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sluice::gateway {
namespace {

// How long a resolver thread sleeps with nothing queued before it looks for hosts to forget.
constexpr absl::Duration kForgetSweep = absl::Seconds(10);
// How long destruction waits for the resolver thread to end before leaving it behind.
constexpr absl::Duration kExitWait = absl::Milliseconds(200);

absl::StatusOr<DnsCache::Addresses> GetAddrInfo(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("DNS resolution of ", host, " failed: ", gai_strerror(rc)));
  }
  DnsCache::Addresses out;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[NI_MAXHOST];
    if (getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof(text), nullptr, 0, NI_NUMERICHOST) ==
        0) {
      bool seen = false;
      for (const std::string& s : out) seen = seen || s == text;
      if (!seen) out.emplace_back(text);
    }
  }
  freeaddrinfo(found);
  if (out.empty()) {
    return absl::UnavailableError(absl::StrCat("DNS resolution of ", host, " found no address"));
  }
  return out;
}

}  // namespace

DnsCache::Resolver DnsCache::SystemResolver() { return GetAddrInfo; }

DnsCache::DnsCache(Resolver resolver, event::TimeSource& time, Options options)
    : options_(options), time_(time), state_(std::make_shared<State>()) {
  thread_ = std::thread(&DnsCache::Run, state_, std::move(resolver), &time_, options_);
}

DnsCache::~DnsCache() {
  Shutdown();
  // The thread is joined when it ends promptly (it is woken by Shutdown), so it is not still
  // unwinding while the process exits and tears down what it may touch. Only a lookup that
  // hangs (getaddrinfo has no deadline of its own) is left behind, so that it cannot hold up
  // the exit: the thread owns the state it needs, and ends when the lookup returns.
  bool exited;
  {
    MutexLock lock(&state_->mu);
    const auto give_up = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(kExitWait);
    while (!state_->exited && std::chrono::steady_clock::now() < give_up) {
      state_->wake.WaitWithTimeout(&state_->mu,
                                   absl::FromChrono(give_up - std::chrono::steady_clock::now()));
    }
    exited = state_->exited;
  }
  if (!thread_.joinable()) return;
  if (exited) {
    thread_.join();
  } else {
    thread_.detach();
  }
}

void DnsCache::Shutdown() {
  MutexLock lock(&state_->mu);
  state_->stopped = true;
  state_->queue.clear();
  for (auto& [host, entry] : state_->entries) entry.waiters.clear();
  state_->wake.SignalAll();
}

std::optional<DnsCache::Result> DnsCache::Lookup(const std::string& host) {
  const event::MonotonicTime now = time_.Now();
  MutexLock lock(&state_->mu);
  Entry& entry = state_->entries[host];
  entry.last_asked = now;
  if (!entry.queued && !state_->stopped) {
    const bool stale =
        !entry.result.has_value() ||
        now - entry.resolved_at >= absl::ToChronoNanoseconds(entry.result->status.ok()
                                                                 ? options_.refresh
                                                                 : options_.failure_refresh);
    if (stale) QueueLocked(host, entry);
  }
  return entry.result;
}

void DnsCache::WhenResolved(const std::string& host, std::function<void()> done) {
  MutexLock lock(&state_->mu);
  if (state_->stopped) return;
  auto it = state_->entries.find(host);
  if (it == state_->entries.end() || !it->second.queued) {
    done();
    return;
  }
  it->second.waiters.push_back(std::move(done));
}

void DnsCache::QueueLocked(const std::string& host, Entry& entry) {
  entry.queued = true;
  state_->queue.push_back(host);
  state_->wake.Signal();
}

size_t DnsCache::size() {
  MutexLock lock(&state_->mu);
  return state_->entries.size();
}

uint64_t DnsCache::resolutions() {
  MutexLock lock(&state_->mu);
  return state_->resolutions;
}

void DnsCache::Run(std::shared_ptr<State> state, Resolver resolver, event::TimeSource* time,
                   Options options) {
  state->mu.Lock();
  while (!state->stopped) {
    if (state->queue.empty()) {
      state->wake.WaitWithTimeout(&state->mu, kForgetSweep);
      if (state->stopped) break;
      // Hosts no request asked for lately leave the cache (never one being resolved).
      const event::MonotonicTime now = time->Now();
      for (auto it = state->entries.begin(); it != state->entries.end();) {
        const Entry& entry = it->second;
        if (!entry.queued &&
            now - entry.last_asked >= absl::ToChronoNanoseconds(options.forget_after)) {
          state->entries.erase(it++);
        } else {
          ++it;
        }
      }
      continue;
    }
    const std::string host = std::move(state->queue.front());
    state->queue.pop_front();
    ++state->resolutions;
    state->mu.Unlock();
    absl::StatusOr<Addresses> found = resolver(host);
    state->mu.Lock();
    // After Shutdown, the cache and its clock may be gone: touch nothing but the state.
    if (state->stopped) break;
    Entry& entry = state->entries[host];
    entry.queued = false;
    entry.resolved_at = time->Now();
    if (found.ok()) {
      entry.result = Result{absl::OkStatus(), *std::move(found)};
    } else if (!entry.result.has_value() || !entry.result->status.ok()) {
      entry.result = Result{found.status(), {}};
    }
    // A failed refresh keeps the addresses that worked (Envoy keeps a DNS cluster's hosts
    // when a refresh fails); they are tried again at the next refresh.
    for (std::function<void()>& done : std::exchange(entry.waiters, {})) done();
  }
  state->exited = true;
  state->wake.SignalAll();
  state->mu.Unlock();
}

}  // namespace sluice::gateway
