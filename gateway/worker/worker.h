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
#include "gateway/event/dispatcher.h"
#include "gateway/event/task.h"
#include "gateway/event/timer_wheel.h"
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
// except through the dispatcher's Post() (and the atomics read by health and metrics).
class Worker final : private event::IoHandler {
 public:
  Worker(int index, GatewayContext& context, std::shared_ptr<grpc::Channel> channel);
  ~Worker();

  // Starts the thread; `listener` is this worker's SO_REUSEPORT listening socket, which the
  // worker now owns.
  void Start(int listener);
  // Stops accepting (new connections are refused once every worker has stopped), lets
  // requests in progress finish with `Connection: close`, closes idle connections.
  void BeginDrain();
  // Ends the loop and joins the thread; connections still open are closed.
  void Stop();

  size_t sessions() const { return session_count_.load(std::memory_order_relaxed); }
  DecisionClient::State decision_state() const {
    return decision_state_.load(std::memory_order_relaxed);
  }
  WorkerTableState table_state() const;

  // Used by sessions, on this worker's thread.
  event::Dispatcher& dispatcher() { return *dispatcher_; }
  // For threads that post to this loop and may outlive it (the DNS resolver).
  std::weak_ptr<event::Dispatcher> dispatcher_ref() { return dispatcher_; }
  // Connections and mirrored requests: whatever is still running when the loop ends is
  // destroyed with it.
  event::TaskGroup& tasks() { return tasks_; }
  int index() const { return index_; }
  GatewayContext& context() { return context_; }
  DecisionClient& decisions() { return *decisions_; }
  UpstreamPool& pool() { return pool_; }
  absl::BitGen& rng() { return rng_; }
  const TableView& View(const std::shared_ptr<const v1::RouteTable>& table);
  void Register(Session* session);
  void Unregister(Session* session);

 private:
  // event::IoHandler, for the listener.
  void OnReadable() override { Accept(); }
  void OnWritable() override {}

  // Accepts every pending connection (the listener is edge-triggered).
  void Accept();
  void OnAcceptBackoff();
  void CloseListener();
  void WatchDecisionState();
  // Every second: closes pooled connections past their idle timeout or closed upstream.
  void ReapIdleConnections();
  // Once the decision client has a newer table: the pools of clusters it no longer has (or
  // whose pool settings changed) are drained (UpstreamPool::SetLivePools).
  void DrainOldPools();
  void CloseIdleSessions();
  // After Stop: exits the loop once the decision stream has finished, or after 5 s.
  void WaitForStreamEnd();

  const int index_;
  GatewayContext& context_;
  // Shared with the decision client's streams and the DNS resolver's callbacks: gRPC may
  // still post a stream's last callbacks after a Stop that gave up waiting for them, and they
  // must find a loop (never run) rather than freed memory.
  std::shared_ptr<event::Dispatcher> dispatcher_;
  event::UniqueFd listener_;
  std::shared_ptr<DecisionClient> decisions_;
  // The decision client's traffic counters as last added to the metrics.
  struct StreamTraffic {
    uint64_t messages = 0;
    uint64_t decide_requests = 0;
    uint64_t reports = 0;
  } counted_;
  UpstreamPool pool_;
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
  event::Timer state_timer_;
  event::Timer drain_timer_;
  event::Timer reaper_timer_;
  event::Timer stop_timer_;
  int stop_waits_ = 0;
  // Waits between accepts that fail (EMFILE: the connections left in the backlog give no new
  // edge, and retrying at once would spin).
  event::Timer accept_backoff_timer_;
  std::chrono::milliseconds accept_backoff_{0};
  bool accept_failing_ = false;
  // Declared last: destroyed first, while the pool, the timers and the loop still exist.
  event::TaskGroup tasks_;
  std::thread thread_;
};

}  // namespace sluice::gateway
