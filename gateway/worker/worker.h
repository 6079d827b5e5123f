#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "gateway/decision/decision_client.h"
#include "gateway/http/beast.h"
#include "gateway/upstream/upstream_pool.h"
#include "gateway/worker/gateway_context.h"

namespace sluice::gateway {

class Session;

// The cluster (and connection pool) of requests forwarded by the decision-failure fallback.
inline constexpr char kFallbackCluster[] = "fallback";

// The key of a cluster's connection pool in the worker's UpstreamPool: its name and a
// generation that changes when its pool settings change (Envoy builds a new cluster, with new
// pools, when a cluster's settings change, and drains the old one).
std::string PoolKey(const v1::ClusterInfo& cluster);

// A route table with the worker's view of it, by cluster id: each cluster's shared circuit
// breakers (held, so the registry keeps them while a table refers to them) and pool key.
struct TableView {
  std::shared_ptr<const v1::RouteTable> table;
  std::vector<std::shared_ptr<ClusterLimits>> limits;
  std::vector<std::string> pools;
};

// What a worker's decision table looks like from outside its thread (health, metrics).
struct WorkerTableState {
  uint64_t version = 0;     // 0: no table yet
  double age_seconds = -1;  // -1: no table; 0: confirmed by a connected server
  bool stale = false;       // deciding from a table the server cannot confirm
  bool unanswered = false;  // connected, but a decision missed its deadline since the last answer
};

// One event loop on one thread, as Envoy's workers: it owns its downstream connections, its
// upstream pool and its decision stream; nothing in here is touched from another thread
// except through Post().
class Worker {
 public:
  Worker(int index, GatewayContext& context, std::shared_ptr<grpc::Channel> channel);
  ~Worker();

  // Starts the thread; `listener` is this worker's SO_REUSEPORT listening socket (its file
  // descriptor, adopted by the worker's own io_context).
  void Start(net::tcp protocol, int listener);
  // Stops accepting (new connections are refused once every worker has stopped), lets
  // requests in progress finish with `Connection: close`, closes idle connections.
  void BeginDrain();
  // Ends the loop and joins the thread.
  void Stop();

  size_t sessions() const { return session_count_.load(std::memory_order_relaxed); }
  DecisionClient::State decision_state() const {
    return decision_state_.load(std::memory_order_relaxed);
  }
  WorkerTableState table_state() const;

  // Used by sessions, on this worker's thread.
  net::asio::io_context& io() { return io_; }
  int index() const { return index_; }
  GatewayContext& context() { return context_; }
  DecisionClient& decisions() { return *decisions_; }
  UpstreamPool& pool() { return pool_; }
  absl::BitGen& rng() { return rng_; }
  const TableView& View(const std::shared_ptr<const v1::RouteTable>& table);
  void Register(Session* session);
  void Unregister(Session* session);

 private:
  net::asio::awaitable<void> Accept();
  void WatchDecisionState();
  // Every second: closes pooled connections past their idle timeout or closed upstream.
  void ReapIdleConnections();
  // Once the decision client has a newer table: the pools of clusters it no longer has (or
  // whose pool settings changed) are drained (UpstreamPool::SetLivePools).
  void DrainOldPools();

  const int index_;
  GatewayContext& context_;
  // Shared with the decision client's streams: gRPC may still post a stream's last callbacks
  // after a Stop that gave up waiting for them, and they must find a loop (never run) rather
  // than freed memory.
  std::shared_ptr<net::asio::io_context> io_holder_ = std::make_shared<net::asio::io_context>(1);
  net::asio::io_context& io_ = *io_holder_;
  std::optional<net::tcp::acceptor> acceptor_;
  std::shared_ptr<DecisionClient> decisions_;
  // The decision client's traffic counters as last added to the metrics.
  struct StreamTraffic {
    uint64_t messages = 0;
    uint64_t decide_requests = 0;
    uint64_t reports = 0;
  } counted_;
  UpstreamPool pool_{io_};
  absl::BitGen rng_;
  TableView view_;
  std::shared_ptr<const v1::RouteTable> pools_table_;  // the table DrainOldPools last saw
  absl::flat_hash_set<Session*> sessions_;
  std::atomic<size_t> session_count_{0};
  std::atomic<DecisionClient::State> decision_state_{DecisionClient::State::kConnecting};
  std::atomic<uint64_t> table_version_{0};
  std::atomic<int64_t> table_age_ms_{-1};
  std::atomic<bool> table_stale_{false};
  std::atomic<bool> unanswered_{false};
  net::asio::steady_timer state_timer_{io_};
  net::asio::steady_timer drain_timer_{io_};
  net::asio::steady_timer reaper_timer_{io_};
  // Waits between accepts that fail (EMFILE: the pending connection keeps the listener
  // readable, and retrying at once would spin).
  net::asio::steady_timer accept_backoff_timer_{io_};
  std::thread thread_;
};

}  // namespace sluice::gateway
