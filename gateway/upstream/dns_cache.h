#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/event/time_source.h"
#include "lib/common/mutex.h"

namespace sluice::gateway {

// Host names of upstream endpoints (ServiceEntry endpoints or hosts with `resolution: DNS`),
// resolved off the workers' threads and cached for every worker. Envoy resolves a DNS
// cluster's hosts on a refresh interval, not per connection, and a request never waits on a
// lookup longer than its own timeouts; the same here:
//   - a host's first lookup starts a resolution; requests wait for it, each bounded by its
//     connect timeout and route timer (the caller's timer; see WhenResolved);
//   - afterwards lookups answer from the cache at once; an entry older than the refresh
//     interval is still used while one refresh runs in the background (Envoy keeps a DNS
//     cluster's hosts across refreshes the same way);
//   - a failed resolution is kept (requests fail fast, flag DF) and retried sooner;
//   - a host no request asked for in `forget_after` leaves the cache, so it does not grow
//     with every name ever configured.
// One resolver thread does the lookups, one at a time: a lookup that hangs delays other
// hosts' first resolutions, but never a worker's loop nor a request past its deadline.
// Thread-safe.
class DnsCache {
 public:
  using Addresses = std::vector<std::string>;  // numeric addresses, in the resolver's order
  // A blocking lookup. The process uses getaddrinfo (SystemResolver); tests inject fakes.
  using Resolver = std::function<absl::StatusOr<Addresses>(const std::string& host)>;

  struct Options {
    absl::Duration refresh = absl::Seconds(5);          // Envoy's dns_refresh_rate default
    absl::Duration failure_refresh = absl::Seconds(1);  // after a failed resolution
    absl::Duration forget_after = absl::Minutes(5);
  };

  // What is known of a host: its addresses, or why it could not be resolved.
  struct Result {
    absl::Status status;
    Addresses addresses;  // non-empty when status is OK
  };

  DnsCache(Resolver resolver, event::TimeSource& time, Options options);
  DnsCache(const DnsCache&) = delete;
  DnsCache& operator=(const DnsCache&) = delete;
  // Shutdown(), then the resolver thread is left to end by itself if a lookup hangs.
  ~DnsCache();

  // getaddrinfo, TCP, any address family.
  static Resolver SystemResolver();

  // The last result for `host`, or nullopt while its first resolution runs. Starts a
  // resolution when the host is new, or its result older than the refresh interval (or the
  // failure refresh interval for a failure) and none runs yet.
  std::optional<Result> Lookup(const std::string& host);

  // Calls `done` once the resolution of `host` that is running or queued ends (at once if
  // none is). `done` runs on the resolver thread, under the cache's lock: it must only hand
  // the news over (post to its worker's loop), never call back into the cache. Callbacks
  // not yet called when Shutdown() runs are dropped, never called.
  void WhenResolved(const std::string& host, std::function<void()> done);

  // Stops resolving and calling back; safe to call more than once. Call it before the loops
  // that callbacks post to are destroyed.
  void Shutdown();

  // Hosts in the cache (those forgotten are not).
  size_t size();
  // Resolutions started since construction.
  uint64_t resolutions();

 private:
  struct Entry {
    std::optional<Result> result;
    event::MonotonicTime resolved_at{};
    event::MonotonicTime last_asked{};
    bool queued = false;  // a resolution is queued or running
    std::vector<std::function<void()>> waiters;
  };
  // What the resolver thread shares with the cache; outlives it when a lookup hangs.
  struct State {
    Mutex mu;
    CondVar wake;
    bool stopped ABSL_GUARDED_BY(mu) = false;
    std::deque<std::string> queue ABSL_GUARDED_BY(mu);
    absl::flat_hash_map<std::string, Entry> entries ABSL_GUARDED_BY(mu);
    uint64_t resolutions ABSL_GUARDED_BY(mu) = 0;
    bool exited ABSL_GUARDED_BY(mu) = false;  // Run has returned but for its destructors
  };

  static void Run(std::shared_ptr<State> state, Resolver resolver, event::TimeSource* time,
                  Options options);
  void QueueLocked(const std::string& host, Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu);

  const Options options_;
  event::TimeSource& time_;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace sluice::gateway
