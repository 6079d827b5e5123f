#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "lib/common/mutex.h"

namespace sluice::gateway {

// A cluster's connection-pool limits as a DestinationRule sets them (sluice.v1.ConnectionPool).
struct PoolLimits {
  static constexpr uint32_t kUnlimited = std::numeric_limits<uint32_t>::max();
  uint32_t max_connections = kUnlimited;       // tcp.maxConnections
  uint32_t max_pending_requests = kUnlimited;  // http.http1MaxPendingRequests
  uint32_t max_requests = kUnlimited;          // http.http2MaxRequests (HTTP/1.1 too)
  uint32_t max_retries = kUnlimited;           // http.maxRetries
};

// Envoy's circuit breakers for one cluster, shared by every worker of the gateway as Envoy
// shares them across its workers (resource_manager_impl.h). Counts are atomics; like
// Envoy's, a limit may be passed briefly by racing workers. Limits can change with a new
// configuration while the counts carry on.
class ClusterLimits {
 public:
  // One unit of a resource; releases it when destroyed.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept : counter_(other.counter_) { other.counter_ = nullptr; }
    Ticket& operator=(Ticket&& other) noexcept {
      Release();
      counter_ = other.counter_;
      other.counter_ = nullptr;
      return *this;
    }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() { Release(); }
    explicit operator bool() const { return counter_ != nullptr; }
    void Release() {
      // Release order: ClusterLimitsRegistry::Sweep may free the counter once it reads 0.
      if (counter_ != nullptr) counter_->fetch_sub(1, std::memory_order_release);
      counter_ = nullptr;
    }

   private:
    friend class ClusterLimits;
    explicit Ticket(std::atomic<uint32_t>* counter) : counter_(counter) {}
    std::atomic<uint32_t>* counter_ = nullptr;
  };

  // What the HTTP/1.1 pool does with a request that needs a connection.
  enum class Admission {
    kUseIdle,   // an idle pooled connection is there
    kOpenNew,   // open one (under maxConnections)
    kQueue,     // wait as pending for a connection to free up
    kOverflow,  // refuse: 503 UO, x-envoy-overloaded
  };

  explicit ClusterLimits(const PoolLimits& limits = {}) { Update(limits); }

  void Update(const PoolLimits& limits);

  // maxRequests: one per request in progress to the cluster.
  Ticket TryRequest() { return TryAcquire(requests_, max_requests_, rq_overflow_); }
  // maxRetries: one per retry in progress.
  Ticket TryRetry() { return TryAcquire(retries_, max_retries_, retry_overflow_); }
  // Whether the maxRetries breaker has room for one more retry. The flow asks before it
  // decides to retry; the retry then takes its ticket with TryRetry.
  bool RetrySlotFree() const {
    return retries_.load(std::memory_order_relaxed) < max_retries_.load(std::memory_order_relaxed);
  }
  void CountRetryOverflow() { retry_overflow_.fetch_add(1, std::memory_order_relaxed); }
  // maxConnections: one per open upstream connection. A refusal does not fail the request;
  // it waits as pending (Envoy counts upstream_cx_overflow).
  Ticket TryConnection() { return TryAcquire(connections_, max_connections_, cx_overflow_); }
  // A connection opened past maxConnections (a host's pool with none, see Admit): counted all
  // the same, as Envoy counts every connection it opens, so that the limit still binds the
  // cluster's other connections while it is open.
  Ticket ForceConnection() {
    connections_.fetch_add(1, std::memory_order_relaxed);
    return Ticket(&connections_);
  }
  // http1MaxPendingRequests: one per request waiting for a connection.
  Ticket TryPending() { return TryAcquire(pending_, max_pending_, pending_overflow_); }

  // Envoy's HTTP/1.1 pool (conn_pool_base.cc, newStream and tryCreateNewConnection): reuse an
  // idle connection; else the request becomes pending if http1MaxPendingRequests allows (else
  // overflow: the cluster's pending limit binds before any connection opens, whichever host
  // was chosen); a pending request then opens a connection if maxConnections allows, or
  // past it when `host_has_connection` is false (the worker's pool for the chosen host has
  // none: Envoy opens one so that a pending request always has a connection to wait for);
  // else it stays queued. A request asking again while queued passes its pending ticket back
  // in `*pending`. On kOpenNew the connection ticket is in `*connection` and the pending one
  // stays in `*pending` until the connection is up (Envoy's request is pending while its
  // connection connects); on kQueue the pending ticket is in `*pending`.
  Admission Admit(bool idle_available, bool host_has_connection, Ticket* connection,
                  Ticket* pending);

  uint32_t requests() const { return requests_.load(std::memory_order_relaxed); }
  uint32_t retries() const { return retries_.load(std::memory_order_relaxed); }
  uint32_t connections() const { return connections_.load(std::memory_order_relaxed); }
  uint32_t pending() const { return pending_.load(std::memory_order_relaxed); }
  uint64_t rq_overflow() const { return rq_overflow_.load(std::memory_order_relaxed); }
  uint64_t retry_overflow() const { return retry_overflow_.load(std::memory_order_relaxed); }
  uint64_t cx_overflow() const { return cx_overflow_.load(std::memory_order_relaxed); }
  uint64_t pending_overflow() const { return pending_overflow_.load(std::memory_order_relaxed); }
  // No ticket of any kind is out (read with acquire order, for ClusterLimitsRegistry::Sweep).
  bool Unused() const;

 private:
  static Ticket TryAcquire(std::atomic<uint32_t>& count, const std::atomic<uint32_t>& max,
                           std::atomic<uint64_t>& overflow);

  std::atomic<uint32_t> max_requests_{PoolLimits::kUnlimited};
  std::atomic<uint32_t> max_retries_{PoolLimits::kUnlimited};
  std::atomic<uint32_t> max_connections_{PoolLimits::kUnlimited};
  std::atomic<uint32_t> max_pending_{PoolLimits::kUnlimited};
  std::atomic<uint32_t> requests_{0};
  std::atomic<uint32_t> retries_{0};
  std::atomic<uint32_t> connections_{0};
  std::atomic<uint32_t> pending_{0};
  std::atomic<uint64_t> rq_overflow_{0};
  std::atomic<uint64_t> retry_overflow_{0};
  std::atomic<uint64_t> cx_overflow_{0};
  std::atomic<uint64_t> pending_overflow_{0};
};

// Every worker's circuit breakers of one cluster are the same object, as in Envoy. Whoever
// uses an entry holds it (each worker's table view, a request from its decision until it
// ends); tickets need not (a pooled connection keeps its maxConnections slot past its
// request), the entry's counts show them. Sweep() drops the entries nobody holds and no
// ticket uses, so that clusters gone from the configuration do not stay forever. Thread-safe.
class ClusterLimitsRegistry {
 public:
  std::shared_ptr<ClusterLimits> Get(const std::string& cluster_name);
  // Removes the entries held by nothing but the registry and with no ticket out; returns
  // how many. A cluster asked for again later starts from fresh counts.
  size_t Sweep();
  size_t size() const;

 private:
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<ClusterLimits>> limits_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::gateway
