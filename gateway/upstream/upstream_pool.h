#pragma once

#include <array>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gateway/event/async_socket.h"
#include "gateway/event/task.h"
#include "gateway/event/time_source.h"
#include "gateway/http/http1_codec.h"
#include "gateway/http/message_collector.h"
#include "gateway/upstream/cluster_limits.h"

namespace sluice::gateway {

class UpstreamPool;

// One HTTP/1.1 connection to an upstream endpoint. Carries one request at a time (no
// pipelining upstream, Envoy's rule) and holds its cluster's maxConnections slot while open.
struct UpstreamConnection {
  UpstreamConnection() = default;
  // A connection counted open by its worker's pool (NoteOpened) and destroyed without
  // Discard (its request's coroutine ended another way) is uncounted here, and wakes a
  // request of its cluster waiting for a connection, as Discard does.
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;
  // Null until its request's coroutine has connected it (see Session::AcquireConnection).
  std::unique_ptr<event::AsyncSocket> socket;
  // Bytes read from the upstream and not yet decoded. A pooled connection holds none: a
  // byte nobody asked for makes it unfit for another request.
  std::string in;
  std::array<char, 16 * 1024> read_chunk;  // what each read fills
  std::string out;  // the request's head (and a streamed body's pieces), encoded
  // The responses, one per request: the decoder is armed (ExpectResponse) before each.
  http::MessageCollector<http::ResponseHead> response;
  http::ResponseDecoder decoder{response};
  std::string cluster;   // the cluster whose slot `ticket` is
  std::string pool;      // its cluster's pool: the name and the generation of its settings
  std::string endpoint;  // "address:port"
  uint32_t requests = 0;
  // Its request was stopped (route timer, client gone) and its socket shut down: whatever
  // it reads from now on is not a response.
  bool aborted = false;
  event::MonotonicTime idle_since;
  // Its cluster's idleTimeout as of its last request (zero: none): past it, an idle
  // connection is closed, as Envoy closes it, whether or not a request comes for it.
  absl::Duration idle_timeout = absl::ZeroDuration();
  ClusterLimits::Ticket ticket;
  // The pool that counts it open (see NoteOpened); expires with the pool.
  std::weak_ptr<UpstreamPool*> counted_by;
};

// A worker's keep-alive connections, by cluster pool and endpoint. As in Envoy, which keeps a
// pool per cluster and host and drains a cluster's pools when the cluster changes, a
// connection opened for one cluster never carries another cluster's request, nor one of the
// same cluster once its pool settings changed (a new generation: a new pool), so each
// cluster's limits count every connection its requests use. Single-threaded: used only from
// the worker's loop. Connections go back only after a complete exchange that allows
// keep-alive; everything else is discarded by the caller (see style-and-stack B5).
class UpstreamPool {
 public:
  UpstreamPool() : self_(std::make_shared<UpstreamPool*>(this)) {}
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // Most recently used idle connection of `pool` to `endpoint` that is still open and has
  // been idle for less than `idle_timeout` (zero: no limit); stale ones are closed on the way.
  std::unique_ptr<UpstreamConnection> TakeIdle(const std::string& pool, const std::string& endpoint,
                                               absl::Duration idle_timeout,
                                               event::MonotonicTime now);
  bool HasIdle(const std::string& pool, const std::string& endpoint) const;

  // Keeps `connection` for reuse unless it has served `max_requests_per_connection` (zero:
  // unlimited), its pool is no longer live (see SetLivePools) or it was aborted, in which
  // case it is closed.
  void Release(std::unique_ptr<UpstreamConnection> connection, uint32_t max_requests_per_connection,
               event::MonotonicTime now);
  // Closes it: its maxConnections slot frees, and a request of its cluster waiting for a
  // connection on this worker wakes up. Nothing may be awaiting its socket.
  void Discard(std::unique_ptr<UpstreamConnection> connection);
  // Closes one idle connection of `cluster` (any endpoint), so that a request queued behind
  // maxConnections can open one to the endpoint it needs. False when there was none.
  bool CloseOneIdle(const std::string& cluster);

  // Waits until a connection of `cluster` frees on this worker (released, discarded or
  // destroyed), at most `max_wait` (InfiniteDuration: 30 days, in practice until a wake, the
  // route timer or the client ends it). The wake comes at the next turn of the loop, not
  // inside the release. No polling: as in Envoy, whose pools are per worker, a request
  // queued here waits for this worker's connections (it is queued only when this worker's
  // pool has one to its endpoint; see ClusterLimits::Admit), and slots other workers free are
  // not its concern. `*cancel` points at the wait's alarm (`alarm`, the waiter's own) while
  // it lasts: Cancel() on it ends the wait at once, resuming the waiter inside the caller, so
  // call it from a loop callback that touches nothing afterwards (AttemptControl::Kick).
  event::Task<void> WaitForRelease(const std::string& cluster, absl::Duration max_wait,
                                   event::Alarm& alarm, event::Alarm** cancel = nullptr);
  size_t waiters() const { return waiters_.size(); }

  // Connections of `pool` to `endpoint` this worker has open (idle or busy). Envoy opens a
  // connection past maxConnections when its pool for a host has none, so that a request
  // queued there is never left without a connection to wait for.
  uint32_t OpenCount(const std::string& pool, const std::string& endpoint) const;
  // Counts `connection` (its pool and endpoint set) open until it is discarded or destroyed.
  void NoteOpened(UpstreamConnection& connection);

  // The pools of the current configuration (until the first call: every pool is live).
  // Idle connections of other pools (clusters gone, or whose settings changed) close now;
  // busy ones close when released, as Envoy drains a cluster's old pool. Returns how many
  // closed now.
  size_t SetLivePools(absl::flat_hash_set<std::string> live);

  // Closes the idle connections that have been idle for their idle timeout, or that the
  // upstream closed or wrote to unasked; returns how many. The worker runs it every second,
  // so that idle connections do not outlive their timeout at the upstream. Drops the entries
  // left empty.
  size_t CloseIdle(event::MonotonicTime now);

  size_t idle_count() const;
  // Pool and endpoint pairs in the idle map: those with idle connections, and those emptied
  // since the last CloseIdle (which drops them; endpoints come and go with the configuration).
  size_t idle_endpoints() const { return idle_.size(); }
  void CloseAll();

 private:
  // The maps' key for a pool and endpoint, built in a buffer kept for the purpose: a lookup
  // allocates nothing (the maps look up by string_view); only a new entry copies it. Valid
  // until the next call.
  absl::string_view Key(const std::string& pool, const std::string& endpoint) const {
    key_.assign(pool);
    key_.push_back('\n');
    key_.append(endpoint);
    return key_;
  }
  bool Live(const std::string& pool) const { return !live_.has_value() || live_->contains(pool); }
  void Wake(const std::string& cluster);
  friend struct UpstreamConnection;
  // A connection counted by NoteOpened is gone: uncount it and wake a waiter of its cluster.
  void Forget(UpstreamConnection& connection);

  // By Key(pool, endpoint), most recently released last.
  absl::flat_hash_map<std::string, std::vector<std::unique_ptr<UpstreamConnection>>> idle_;
  struct Waiter {
    std::string cluster;
    event::Alarm* alarm;
    bool woken = false;
  };
  std::list<Waiter> waiters_;
  absl::flat_hash_map<std::string, uint32_t> open_;  // by Key(pool, endpoint)
  std::optional<absl::flat_hash_set<std::string>> live_;
  // Connections it counts hold a weak reference: one destroyed after the pool touches nothing.
  std::shared_ptr<UpstreamPool*> self_;
  mutable std::string key_;  // see Key()
};

// True when the peer closed the connection or sent bytes nobody asked for: a pooled
// connection in that state must not carry a request.
bool PeerClosedOrDirty(int fd);
// The same for a connection on the loop: no system call unless a readiness edge (data, a
// hang-up) has come since its last read.
bool PeerClosedOrDirty(const event::AsyncSocket& socket);

}  // namespace sluice::gateway
