#include "gateway/worker/worker.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gateway/worker/session.h"
#include "lib/common/log.h"

namespace sluice::gateway {

namespace asio = net::asio;
using net::tcp;

std::string PoolKey(const v1::ClusterInfo& cluster) {
  // The settings themselves (a few bytes) are the generation: equal settings share a pool
  // across table versions, so an unrelated change closes no connection.
  return absl::StrCat(cluster.name(), "#",
                      absl::BytesToHexString(cluster.pool().SerializeAsString()));
}

Worker::Worker(int index, GatewayContext& context, std::shared_ptr<grpc::Channel> channel)
    : index_(index), context_(context) {
  DecisionClient::Options options;
  options.deadline = context.options.decision_deadline;
  options.gateway_name = absl::StrCat(context.options.gateway_name, "/", index);
  options.mode = context.options.decision_mode;
  options.max_table_age = context.options.max_table_age;
  options.loop_keepalive = io_holder_;
  decisions_ = DecisionClient::Create(io_, std::move(channel), options);
}

Worker::~Worker() { Stop(); }

void Worker::Start(tcp protocol, int listener) {
  acceptor_.emplace(io_, protocol, listener);
  asio::post(io_, [this] {
    decisions_->Start();
    WatchDecisionState();
    ReapIdleConnections();
  });
  asio::co_spawn(io_, Accept(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

asio::awaitable<void> Worker::Accept() {
  // After a failed accept: 10 ms, doubling up to 1 s, back to 10 ms once one succeeds.
  constexpr std::chrono::milliseconds kFirstBackoff(10);
  constexpr std::chrono::milliseconds kMaxBackoff(1000);
  std::chrono::milliseconds backoff = kFirstBackoff;
  bool failing = false;
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor_->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
      // EMFILE and friends: keep serving the connections we have, and wait before the next
      // try. The connection left in the backlog keeps the listener readable, so trying again
      // at once would spin at 100% CPU for as long as the shortage lasts.
      if (!failing) {
        LogWarning("worker ", index_, ": cannot accept connections (", ec.message(),
                   "), retrying with back-off up to 1s");
        failing = true;
      }
      accept_backoff_timer_.expires_after(backoff);
      co_await accept_backoff_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
      backoff = std::min(backoff * 2, kMaxBackoff);
      continue;
    }
    if (failing) {
      LogInfo("worker ", index_, ": accepting connections again");
      failing = false;
      backoff = kFirstBackoff;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto session = std::make_shared<Session>(*this, std::move(socket));
    asio::co_spawn(
        io_, [session]() -> asio::awaitable<void> { co_await session->Run(); }, asio::detached);
  }
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
  state_timer_.expires_after(std::chrono::milliseconds(100));
  state_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) WatchDecisionState();
  });
}

void Worker::ReapIdleConnections() {
  DrainOldPools();
  pool_.CloseIdle(context_.clock->Now());
  // Circuit breakers of clusters no table, request or connection uses any more.
  if (index_ == 0) context_.limits.Sweep();
  reaper_timer_.expires_after(std::chrono::seconds(1));
  reaper_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) ReapIdleConnections();
  });
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
  asio::post(io_, [this] {
    boost::system::error_code ec;
    if (acceptor_) acceptor_->close(ec);
    accept_backoff_timer_.cancel();
    // A connection between requests gets a moment for a request already on its way, then
    // closes; busy ones answer their request with Connection: close and end.
    drain_timer_.expires_after(std::chrono::milliseconds(250));
    drain_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      for (Session* s : sessions_) s->CloseIfIdle();
    });
  });
}

void Worker::Stop() {
  if (!thread_.joinable()) return;
  asio::post(io_, [this] {
    decisions_->Stop();
    state_timer_.cancel();
    drain_timer_.cancel();
    reaper_timer_.cancel();
    accept_backoff_timer_.cancel();
    pool_.CloseAll();
    boost::system::error_code ec;
    if (acceptor_) acceptor_->close(ec);
  });
  // The loop ends once the decision stream has finished (cancelled, it takes milliseconds),
  // or after 5 s at most. A stream still not finished then (a loaded machine, a gRPC that
  // hangs) may post its last callbacks later: they find the loop kept by io_holder_, and are
  // never run.
  asio::co_spawn(
      io_,
      [this]() -> asio::awaitable<void> {
        asio::steady_timer wait(io_);
        for (int i = 0; i < 500 && !decisions_->stream_closed(); ++i) {
          wait.expires_after(std::chrono::milliseconds(10));
          co_await wait.async_wait(asio::use_awaitable);
        }
        if (!decisions_->stream_closed()) {
          LogWarning("worker ", index_, ": decision stream not finished 5 s after stop");
        }
        io_.stop();
      },
      asio::detached);
  thread_.join();
}

}  // namespace sluice::gateway
