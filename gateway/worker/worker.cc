#include "gateway/worker/worker.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gateway/event/async_socket.h"
#include "gateway/event/poller.h"
#include "gateway/event/socket.h"
#include "gateway/worker/session.h"
#include "lib/common/log.h"

namespace sluice::gateway {

std::string PoolKey(const v1::ClusterInfo& cluster) {
  // The settings themselves (a few bytes) are the generation: equal settings share a pool
  // across table versions, so an unrelated change closes no connection.
  return absl::StrCat(cluster.name(), "#",
                      absl::BytesToHexString(cluster.pool().SerializeAsString()));
}

namespace {

std::shared_ptr<event::Dispatcher> MakeDispatcher(event::TimeSource& clock, bool io_uring) {
  std::unique_ptr<event::Poller> poller;
  if (io_uring) {
    absl::StatusOr<std::unique_ptr<event::Poller>> ring = event::CreateIoUringPoller();
    if (ring.ok()) {
      poller = *std::move(ring);
    } else {
      // main() made one before starting any worker, so a resource ran out (locked memory,
      // descriptors): this worker does without.
      LogWarning("a worker's io_uring: ", ring.status().ToString(), "; it uses epoll");
    }
  }
  absl::StatusOr<std::unique_ptr<event::Dispatcher>> dispatcher =
      event::Dispatcher::Create(clock, std::move(poller));
  if (!dispatcher.ok()) {
    // epoll_create1 or eventfd failed: the process is out of descriptors at start-up.
    LogError("cannot create a worker's event loop: ", dispatcher.status().ToString());
    std::abort();
  }
  return std::shared_ptr<event::Dispatcher>(std::move(*dispatcher));
}

}  // namespace

Worker::Worker(int index, GatewayContext& context, std::shared_ptr<grpc::Channel> channel)
    : index_(index),
      context_(context),
      dispatcher_(MakeDispatcher(*context.clock, context.options.io_uring)),
      state_timer_(dispatcher_->timers()),
      drain_timer_(dispatcher_->timers()),
      reaper_timer_(dispatcher_->timers()),
      stop_timer_(dispatcher_->timers()),
      accept_backoff_timer_(dispatcher_->timers()) {
  DecisionClient::Options options;
  options.deadline = context.options.decision_deadline;
  options.gateway_name = absl::StrCat(context.options.gateway_name, "/", index);
  options.mode = context.options.decision_mode;
  options.max_table_age = context.options.max_table_age;
  options.loop_keepalive = dispatcher_;
  decisions_ = DecisionClient::Create(*dispatcher_, std::move(channel), options);
}

Worker::~Worker() { Stop(); }

void Worker::Start(int listener) {
  listener_.reset(listener);
  thread_ = std::thread([this] {
    dispatcher_->BindToCurrentThread();  // before any socket queues an operation
    // Non-blocking (an edge-triggered listener is drained until EAGAIN), and TCP_NODELAY,
    // which accepted sockets inherit.
    const int flags = ::fcntl(listener_.get(), F_GETFL);
    ::fcntl(listener_.get(), F_SETFL, flags | O_NONBLOCK);
    const int one = 1;
    ::setsockopt(listener_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (absl::Status s = dispatcher_->RegisterFd(listener_.get(), this, event::kIoReadable);
        !s.ok()) {
      LogError("worker ", index_, ": cannot watch its listener: ", s.ToString());
    }
    decisions_->Start();
    WatchDecisionState();
    ReapIdleConnections();
    Accept();  // connections that came before the registration gave no edge
    dispatcher_->Run();
    // The loop has ended: what is still running ends here, on its own thread, while the
    // loop's timers and sockets still exist.
    tasks_.DestroyAll();
    pool_.CloseAll();
    CloseListener();
    dispatcher_->FinishOperations();
  });
}

void Worker::Accept() {
  if (!listener_.valid() || accept_failing_) return;
  const absl::Status status = event::AcceptAll(
      listener_.get(), [this](event::UniqueFd fd, const event::SocketAddress& peer) {
        absl::StatusOr<std::unique_ptr<event::AsyncSocket>> socket =
            event::AsyncSocket::Create(*dispatcher_, std::move(fd));
        if (!socket.ok()) {
          LogWarning("worker ", index_,
                     ": cannot register a connection: ", socket.status().ToString());
          return;
        }
        tasks_.Start(
            Session::Serve(std::make_unique<Session>(*this, std::move(*socket), peer.Host())));
      });
  if (status.ok()) {
    if (accept_backoff_ > std::chrono::milliseconds(0)) {
      LogInfo("worker ", index_, ": accepting connections again");
      accept_backoff_ = std::chrono::milliseconds(0);
    }
    return;
  }
  // EMFILE and friends: keep serving the connections we have, and wait before the next try
  // (10 ms, doubling up to 1 s; back to 10 ms once one succeeds). The connections left in
  // the backlog keep the listener readable but give no new edge, so only the timer retries.
  if (accept_backoff_ == std::chrono::milliseconds(0)) {
    LogWarning("worker ", index_, ": cannot accept connections (", status.message(),
               "), retrying with back-off up to 1s");
    accept_backoff_ = std::chrono::milliseconds(10);
  } else {
    accept_backoff_ = std::min(accept_backoff_ * 2, std::chrono::milliseconds(1000));
  }
  accept_failing_ = true;
  accept_backoff_timer_.ArmAfter(accept_backoff_,
                                 event::TimerCallback::Bind<&Worker::OnAcceptBackoff>(this));
}

void Worker::OnAcceptBackoff() {
  accept_failing_ = false;
  Accept();
}

void Worker::CloseListener() {
  if (!listener_.valid()) return;
  (void)dispatcher_->Unregister(listener_.get());
  listener_.reset();
  accept_backoff_timer_.Cancel();
}

WorkerTableState Worker::table_state() const {
  WorkerTableState state;
  state.version = table_version_.load(std::memory_order_relaxed);
  const int64_t age_ms = table_age_ms_.load(std::memory_order_relaxed);
  state.age_seconds = age_ms < 0 ? -1 : age_ms / 1000.0;
  state.stale = table_stale_.load(std::memory_order_relaxed);
  state.unanswered = unanswered_.load(std::memory_order_relaxed);
  return state;
}

void Worker::WatchDecisionState() {
  decision_state_.store(decisions_->state(), std::memory_order_relaxed);
  const absl::Duration age = decisions_->table_age();
  table_version_.store(decisions_->table_version(), std::memory_order_relaxed);
  table_age_ms_.store(age == absl::InfiniteDuration() ? -1 : absl::ToInt64Milliseconds(age),
                      std::memory_order_relaxed);
  table_stale_.store(decisions_->stale(), std::memory_order_relaxed);
  unanswered_.store(decisions_->unanswered(), std::memory_order_relaxed);
  context_.sluice_metrics->SetTableAge(index_, age);
  // The decision stream's traffic since the last look.
  const uint64_t messages = decisions_->messages_sent();
  const uint64_t decides = decisions_->decide_requests_sent();
  const uint64_t reports = decisions_->reports_sent();
  context_.sluice_metrics->AddDecisionStreamTraffic(
      messages - counted_.messages, decides - counted_.decide_requests, reports - counted_.reports);
  counted_ = {messages, decides, reports};
  if (index_ == 0) {
    context_.sluice_metrics->SetDecisionServiceUp(decisions_->state() ==
                                                  DecisionClient::State::kConnected);
  }
  state_timer_.ArmAfter(std::chrono::milliseconds(100),
                        event::TimerCallback::Bind<&Worker::WatchDecisionState>(this));
}

void Worker::ReapIdleConnections() {
  DrainOldPools();
  pool_.CloseIdle(context_.clock->Now());
  // Circuit breakers of clusters no table, request or connection uses any more.
  if (index_ == 0) context_.limits.Sweep();
  reaper_timer_.ArmAfter(std::chrono::seconds(1),
                         event::TimerCallback::Bind<&Worker::ReapIdleConnections>(this));
}

const TableView& Worker::View(const std::shared_ptr<const v1::RouteTable>& table) {
  if (view_.table != table) {
    view_.table = table;
    view_.limits.assign(table->clusters_size(), nullptr);
    view_.pools.assign(table->clusters_size(), std::string());
    for (const v1::ClusterInfo& cluster : table->clusters()) {
      std::shared_ptr<ClusterLimits> limits = context_.limits.Get(cluster.name());
      PoolLimits pool;
      pool.max_connections = cluster.pool().max_connections();
      pool.max_pending_requests = cluster.pool().max_pending_requests();
      pool.max_requests = cluster.pool().max_requests();
      pool.max_retries = cluster.pool().max_retries();
      limits->Update(pool);
      if (cluster.id() < view_.limits.size()) {
        view_.limits[cluster.id()] = std::move(limits);
        view_.pools[cluster.id()] = PoolKey(cluster);
      }
    }
  }
  DrainOldPools();
  return view_;
}

void Worker::DrainOldPools() {
  const std::shared_ptr<const v1::RouteTable>& latest = decisions_->latest_table();
  if (latest == nullptr || latest == pools_table_) return;
  pools_table_ = latest;
  absl::flat_hash_set<std::string> live = {kFallbackCluster};
  for (const v1::ClusterInfo& cluster : latest->clusters()) live.insert(PoolKey(cluster));
  pool_.SetLivePools(std::move(live));
}

void Worker::Register(Session* session) {
  sessions_.insert(session);
  session_count_.store(sessions_.size(), std::memory_order_relaxed);
}

void Worker::Unregister(Session* session) {
  sessions_.erase(session);
  session_count_.store(sessions_.size(), std::memory_order_relaxed);
}

void Worker::BeginDrain() {
  dispatcher_->Post([this] {
    CloseListener();
    // A connection between requests gets a moment for a request already on its way, then
    // closes; busy ones answer their request with Connection: close and end.
    drain_timer_.ArmAfter(std::chrono::milliseconds(250),
                          event::TimerCallback::Bind<&Worker::CloseIdleSessions>(this));
  });
}

void Worker::CloseIdleSessions() {
  // Each closes at the next turn of the loop (the set must not change while walked).
  for (Session* s : sessions_) s->CloseIfIdle();
}

void Worker::Stop() {
  if (!thread_.joinable()) return;
  dispatcher_->Post([this] {
    decisions_->Stop();
    state_timer_.Cancel();
    drain_timer_.Cancel();
    reaper_timer_.Cancel();
    pool_.CloseAll();
    CloseListener();
    stop_waits_ = 0;
    WaitForStreamEnd();
  });
  thread_.join();
}

void Worker::WaitForStreamEnd() {
  // The loop ends once the decision stream has finished (cancelled, it takes milliseconds),
  // or after 5 s at most. A stream still not finished then (a loaded machine, a gRPC that
  // hangs) may post its last callbacks later: they find the loop kept alive by the stream
  // (Options::loop_keepalive), and are never run.
  if (!decisions_->stream_closed() && stop_waits_++ < 500) {
    stop_timer_.ArmAfter(std::chrono::milliseconds(10),
                         event::TimerCallback::Bind<&Worker::WaitForStreamEnd>(this));
    return;
  }
  if (!decisions_->stream_closed()) {
    LogWarning("worker ", index_, ": decision stream not finished 5 s after stop");
  }
  dispatcher_->Exit();
}

}  // namespace sluice::gateway
