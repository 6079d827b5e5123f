#include "gateway/decision/decision_client.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/random/distributions.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "lib/common/log.h"

namespace sluice::gateway {
namespace {

constexpr size_t kTablesKept = 4;
// What may wait for one write in flight; past it requests are decided from the table (or
// fail) and reports are dropped, so a stalled stream cannot grow the gateway without bound.
constexpr int kMaxQueuedDecisions = 4096;
constexpr int kMaxQueuedReports = 16384;
// How long a missed deadline keeps health degraded when no decision follows to tell otherwise.
constexpr std::chrono::seconds kUnansweredMemory(5);

std::chrono::steady_clock::time_point SteadyNow() { return std::chrono::steady_clock::now(); }

std::chrono::nanoseconds Chrono(absl::Duration d) { return absl::ToChronoNanoseconds(d); }

}  // namespace

// Lives on gRPC's threads. It touches the client only by posting to the client's loop, and
// holds the RPC open (AddHold) until the loop says it will not write any more, so a write
// can never race the end of the stream.
class DecisionClient::Reactor final
    : public grpc::ClientBidiReactor<v1::GatewayMessage, v1::ServerMessage> {
 public:
  Reactor(std::weak_ptr<DecisionClient> owner, event::Dispatcher& dispatcher,
          std::shared_ptr<void> loop_keepalive, v1::DecisionService::Stub& stub)
      : owner_(std::move(owner)),
        dispatcher_(dispatcher),
        loop_keepalive_(std::move(loop_keepalive)) {
    stub.async()->Stream(&context_, this);
    AddHold();
    StartRead(&in_);
    StartCall();
  }

  // Sends `batch`'s content and leaves it empty, holding the elements of the message sent
  // before (cleared, kept for reuse: the next batch's requests and reports are written into
  // them instead of allocated). Called once the previous write is done.
  void Write(v1::GatewayMessage& batch) {
    out_.Clear();
    out_.Swap(&batch);
    StartWrite(&out_);
  }
  void ReleaseHold() { RemoveHold(); }
  void Cancel() { context_.TryCancel(); }

  // grpc::ClientBidiReactor
  void OnWriteDone(bool ok) override {
    Post([ok](DecisionClient& c) { c.OnWriteDone(ok); });
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Post([](DecisionClient& c) { c.OnReadsEnded(); });
      return;
    }
    // What was read goes to the loop; the next read goes into a message the loop has
    // handled before, whose repeated elements and strings keep their buffers.
    std::unique_ptr<v1::ServerMessage> message = spare_->Take();
    message->Swap(&in_);
    Post([message = std::move(message), spare = spare_](DecisionClient& c) mutable {
      c.OnMessage(*message);
      spare->Give(std::move(message));
    });
    StartRead(&in_);
  }
  void OnDone(const grpc::Status& status) override {
    auto owner = owner_.lock();
    if (owner == nullptr) {
      delete this;
      return;
    }
    dispatcher_.Post([owner, status, this] {
      owner->OnStreamDone(this, status);
      delete this;
    });
  }

 private:
  template <typename F>
  void Post(F f) {
    dispatcher_.Post([weak = owner_, f = std::move(f)]() mutable {
      if (auto owner = weak.lock()) f(*owner);
    });
  }

  // Messages the loop has handled, cleared, for the next reads. Shared with the loop's
  // tasks, which may outlive the reactor.
  class SpareMessages {
   public:
    std::unique_ptr<v1::ServerMessage> Take() {
      absl::MutexLock lock(&mu_);
      if (spare_.empty()) return std::make_unique<v1::ServerMessage>();
      std::unique_ptr<v1::ServerMessage> m = std::move(spare_.back());
      spare_.pop_back();
      return m;
    }
    void Give(std::unique_ptr<v1::ServerMessage> m) {
      m->Clear();  // keeps the elements and their buffers
      absl::MutexLock lock(&mu_);
      if (spare_.size() < kKept) spare_.push_back(std::move(m));
    }

   private:
    static constexpr size_t kKept = 4;  // messages the loop has not handled yet, at most
    absl::Mutex mu_;
    std::vector<std::unique_ptr<v1::ServerMessage>> spare_ ABSL_GUARDED_BY(mu_);
  };

  std::weak_ptr<DecisionClient> owner_;
  event::Dispatcher& dispatcher_;
  // Keeps dispatcher_ for as long as gRPC may call us.
  std::shared_ptr<void> loop_keepalive_;
  grpc::ClientContext context_;
  v1::GatewayMessage out_;
  v1::ServerMessage in_;
  std::shared_ptr<SpareMessages> spare_ = std::make_shared<SpareMessages>();
};

std::shared_ptr<DecisionClient> DecisionClient::Create(event::Dispatcher& dispatcher,
                                                       std::shared_ptr<grpc::Channel> channel,
                                                       Options options) {
  // Debian's gRPC (1.51, whose I/O manager runs nothing in the background) serves the
  // callback API from one process-wide completion queue, counted by the channels that have
  // used it: when the last of them goes, gRPC shuts the queue down and joins its threads, and
  // that teardown races those threads (an abort, "assertion failed: prior > 0" in
  // grpc_completion_queue_next, seen between test cases and possible at a gateway's exit;
  // couchbase-cxx-client#1060 hit the same). The first channel is kept for the life of the
  // process (reachable, so no leak is reported), so the count never falls back to zero.
  static auto* const kFirstChannel = new std::shared_ptr<grpc::Channel>(channel);
  (void)kFirstChannel;
  return std::shared_ptr<DecisionClient>(
      new DecisionClient(dispatcher, std::move(channel), std::move(options)));
}

DecisionClient::DecisionClient(event::Dispatcher& dispatcher,
                               std::shared_ptr<grpc::Channel> channel, Options options)
    : dispatcher_(dispatcher),
      channel_(std::move(channel)),
      stub_(v1::DecisionService::NewStub(channel_)),
      options_(std::move(options)),
      sweep_timer_(dispatcher.timers()),
      reconnect_timer_(dispatcher.timers()),
      flush_timer_(dispatcher.timers()),
      reconnect_delay_(options_.reconnect_initial) {}

DecisionClient::~DecisionClient() {
  if (reactor_ != nullptr) reactor_->Cancel();
}

void DecisionClient::Start() {
  stopped_ = false;
  Connect();
  ScheduleSweep();
}

void DecisionClient::Stop() {
  stopped_ = true;
  sweep_timer_.Cancel();
  reconnect_timer_.Cancel();
  flush_timer_.Cancel();
  flush_scheduled_ = false;
  if (reactor_ != nullptr) reactor_->Cancel();
  FailAll(absl::CancelledError("decision client stopped"));
}

void DecisionClient::Connect() {
  if (stopped_ || reactor_ != nullptr) return;
  state_ = State::kConnecting;
  reads_ended_ = false;
  write_in_flight_ = false;
  // A new stream may reach a restarted server (or another replica) whose versions are not
  // the old one's: tables are only trusted from the stream that sent them.
  tables_.clear();
  connect_started_ = SteadyNow();
  endpoint_changes_applied_ = 0;
  reactor_ = new Reactor(weak_from_this(), dispatcher_, options_.loop_keepalive, *stub_);
  batch_.set_gateway_name(options_.gateway_name);
  batch_.set_mode(options_.mode);
  ScheduleFlush();
}

absl::Duration DecisionClient::table_age() const {
  if (!local_.has_table()) return absl::InfiniteDuration();
  if (state_ == State::kConnected) return absl::ZeroDuration();
  return absl::FromChrono(SteadyNow() - last_heard_);
}

bool DecisionClient::TableUsable() const {
  return local_.has_table() && table_age() <= options_.max_table_age;
}

void DecisionClient::AnswerFromTable(const v1::DecideRequest& request, v1::Decision* recycle,
                                     DecisionSource source, const Callback& callback,
                                     absl::FunctionRef<absl::Status()> error) {
  if (!TableUsable()) {
    callback(error());  // built only here: a status with a message allocates
    return;
  }
  std::optional<v1::AttemptReport> no_healthy;
  Answer answer = local_.Decide(request, &no_healthy, recycle);
  answer.source = source;
  if (no_healthy.has_value()) Report(*std::move(no_healthy));
  callback(std::move(answer));
}

bool DecisionClient::unanswered() const {
  return unanswered_since_.has_value() && SteadyNow() - *unanswered_since_ < kUnansweredMemory;
}

void DecisionClient::Decide(v1::DecideRequest& request, Callback callback, v1::Decision* recycle) {
  Decide(request, nullptr, std::move(callback), recycle);
}

void DecisionClient::Decide(v1::DecideRequest&& request, Callback callback) {
  auto owned = std::make_unique<v1::DecideRequest>(std::move(request));
  v1::DecideRequest& kept = *owned;
  Decide(kept, std::move(owned), std::move(callback), nullptr);
}

void DecisionClient::Decide(v1::DecideRequest& request, std::unique_ptr<v1::DecideRequest> owned,
                            Callback callback, v1::Decision* recycle) {
  const uint64_t id = ++next_id_;
  request.set_id(id);
  const bool connected = state_ == State::kConnected && !stopped_;
  if (local_.has_table() && (options_.mode == v1::DECISION_MODE_LOCAL || !connected)) {
    AnswerFromTable(request, recycle, connected ? DecisionSource::kLocal : DecisionSource::kStale,
                    callback, [] { return absl::UnavailableError("decision table too old"); });
    return;
  }
  if (state_ == State::kDisconnected || stopped_) {
    // Fail at once: the caller applies its policy now rather than after the deadline.
    callback(absl::UnavailableError("decision service unreachable"));
    return;
  }
  if (batch_.decide_size() >= kMaxQueuedDecisions) {
    // The stream is not keeping up (a write has been in flight for long): do not queue
    // without bound; decide from the table, or let the failure policy answer.
    AnswerFromTable(request, recycle, DecisionSource::kStale, callback, [] {
      return absl::ResourceExhaustedError("too many decisions waiting for the server");
    });
    return;
  }
  // Server mode, or no table yet: the server decides.
  if (latest_table_ != nullptr) request.set_header_names_version(latest_table_->version());
  Pending& pending = pending_[id];
  pending.callback = std::move(callback);
  pending.deadline = SteadyNow() + Chrono(options_.deadline);
  pending.request = &request;
  pending.recycle = recycle;
  pending.owned = std::move(owned);
  // Copied into an element kept from an earlier message: its strings have their buffers.
  batch_.add_decide()->CopyFrom(request);
  ScheduleFlush();
}

void DecisionClient::Report(const v1::AttemptReport& report) {
  local_.OnReport(report.id());
  QueueReport(report);
}

void DecisionClient::QueueReport(const v1::AttemptReport& report) {
  if (reactor_ == nullptr) return;  // nobody to tell; the server releases the stream's load
  if (batch_.reports_size() >= kMaxQueuedReports) {
    ++reports_dropped_;  // a stream that cannot keep up loses reports, never memory
    return;
  }
  batch_.add_reports()->CopyFrom(report);  // a cleared element, when the batch holds one
  ScheduleReportFlush();
}

// Requests queued during this turn of the loop go out together: the flush runs after the
// handlers already queued.
void DecisionClient::ScheduleFlush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  flush_timer_.ArmAfter(event::MonotonicDuration::zero(),
                        event::TimerCallback::Bind<&DecisionClient::OnFlushTimer>(this));
}

void DecisionClient::OnFlushTimer() {
  flush_scheduled_ = false;
  Flush();
}

void DecisionClient::ScheduleReportFlush() {
  // A flush already coming (for the next turn, or for earlier reports) takes these along.
  if (flush_scheduled_ || flush_timer_.armed()) return;
  flush_timer_.ArmAfter(options_.report_delay,
                        event::TimerCallback::Bind<&DecisionClient::OnReportTimer>(this));
}

void DecisionClient::OnReportTimer() {
  reports_due_ = true;
  Flush();
}

bool DecisionClient::OnlyReports() const {
  return batch_.decide_size() == 0 && !batch_.has_ack() && batch_.gateway_name().empty();
}

void DecisionClient::Flush() {
  if (reactor_ == nullptr || reads_ended_ || write_in_flight_) return;
  if (batch_.decide_size() == 0 && batch_.reports_size() == 0 && batch_.gateway_name().empty() &&
      !batch_.has_ack()) {
    return;
  }
  // Requests answered at their deadline while they waited for this write are not asked.
  auto* decide = batch_.mutable_decide();
  decide->erase(
      std::remove_if(decide->begin(), decide->end(),
                     [this](const v1::DecideRequest& r) { return !pending_.contains(r.id()); }),
      decide->end());
  if (OnlyReports() && batch_.reports_size() == 0) return;
  if (OnlyReports() && !reports_due_) {
    ScheduleReportFlush();
    return;
  }
  reports_due_ = false;
  if (flush_timer_.armed() && !flush_scheduled_) flush_timer_.Cancel();  // they go now
  write_in_flight_ = true;
  ++messages_sent_;
  decide_requests_sent_ += static_cast<uint64_t>(batch_.decide_size());
  reports_sent_ += static_cast<uint64_t>(batch_.reports_size());
  reactor_->Write(batch_);
}

void DecisionClient::OnWriteDone(bool ok) {
  write_in_flight_ = false;
  if (!ok || reads_ended_) {
    if (reads_ended_ && reactor_ != nullptr) reactor_->ReleaseHold();
    return;
  }
  Flush();  // what queued up while the write was in flight
}

void DecisionClient::Acknowledge() {
  v1::TableAck* ack = batch_.mutable_ack();
  ack->set_table_version(local_.version());
  ack->set_endpoint_changes(endpoint_changes_applied_);
  ScheduleFlush();
}

void DecisionClient::OnMessage(v1::ServerMessage& message) {
  last_heard_ = SteadyNow();
  bool installed = false;
  if (message.has_decision_table()) {
    if (absl::Status status = local_.Install(message.decision_table()); !status.ok()) {
      // The previous table keeps serving; the server sees the old version acknowledged.
      LogError("decision table ", message.decision_table().version(),
               " not installed: ", status.message());
    } else {
      const auto& table = local_.route_table();
      tables_.try_emplace(table->version(), table);
      while (tables_.size() > kTablesKept) tables_.erase(tables_.begin());
      if (latest_table_ == nullptr || latest_table_->version() < table->version() ||
          options_.mode == v1::DECISION_MODE_LOCAL) {
        latest_table_ = table;
      }
      if (state_ == State::kConnecting) {
        state_ = State::kConnected;
        unanswered_since_.reset();  // a new stream starts afresh
        reconnect_delay_ = options_.reconnect_initial;
      }
    }
    installed = true;
  }
  for (const v1::EndpointChange& change : message.endpoint_changes()) {
    local_.Apply(change);
    ++endpoint_changes_applied_;
    installed = true;
  }
  if (installed) Acknowledge();
  if (message.has_table()) {
    auto table = std::make_shared<v1::RouteTable>();
    table->Swap(message.mutable_table());
    tables_[table->version()] = table;
    latest_table_ = table;
    while (tables_.size() > kTablesKept) tables_.erase(tables_.begin());
    if (state_ == State::kConnecting) {
      state_ = State::kConnected;
      unanswered_since_.reset();
      reconnect_delay_ = options_.reconnect_initial;
    }
  }
  for (v1::Decision& d : *message.mutable_decisions()) {
    auto it = pending_.find(d.id());
    if (it == pending_.end()) {
      // Answered already (from the table, at the deadline). The server counts the endpoint it
      // chose as loaded until a report names the decision: release it, or least-request
      // would avoid that endpoint for the life of the stream.
      if (d.action() == v1::FORWARD) {
        v1::AttemptReport report;
        report.set_id(d.id());
        report.set_config_version(d.config_version());
        report.set_cluster_id(d.cluster_id());
        report.set_endpoint_index(d.endpoint_index());
        report.set_attempt(1);
        report.set_outcome(v1::NOT_SENT);
        report.set_final(true);
        // Not Report(): the id's local in-flight count belongs to the table's answer.
        QueueReport(report);
        ++late_decisions_;
      }
      continue;
    }
    Callback callback = std::move(it->second.callback);
    v1::Decision* recycle = it->second.recycle;
    pending_.erase(it);
    unanswered_since_.reset();  // answered in time again
    auto table = tables_.find(d.config_version());
    if (table == tables_.end() && d.action() == v1::FORWARD) {
      callback(absl::InternalError(absl::StrCat("decision for config version ", d.config_version(),
                                                " came without its table")));
      continue;
    }
    Answer answer;
    // The caller's spent decision takes this one's place in the message: the next message is
    // read into its buffers.
    if (recycle != nullptr) answer.decision.Swap(recycle);
    answer.decision.Swap(&d);
    if (table != tables_.end()) answer.table = table->second;
    callback(std::move(answer));
  }
}

void DecisionClient::OnReadsEnded() {
  reads_ended_ = true;
  // No write may start now; once none is in flight the RPC may finish.
  if (!write_in_flight_ && reactor_ != nullptr) reactor_->ReleaseHold();
}

void DecisionClient::OnStreamDone(Reactor* reactor, const grpc::Status& status) {
  if (reactor != reactor_) return;
  reactor_ = nullptr;
  state_ = State::kDisconnected;
  // A server that refuses this gateway's identity will refuse every reconnection too: say so
  // once per distinct reason rather than at every back-off.
  if (status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
      status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    if (status.error_message() != last_refusal_) {
      last_refusal_ = status.error_message();
      LogError("decision server refused this gateway: ", last_refusal_);
    }
  } else {
    last_refusal_.clear();
  }
  FailAll(absl::UnavailableError(
      absl::StrCat("decision stream ended: ", status.error_message().empty()
                                                  ? std::string("closed by the server")
                                                  : status.error_message())));
  batch_.Clear();
  if (stopped_) return;
  // Jittered exponential back-off: [d/2, d), d doubling up to the maximum.
  const absl::Duration wait =
      reconnect_delay_ / 2 +
      absl::Microseconds(absl::Uniform<int64_t>(
          rng_, 0, std::max<int64_t>(1, absl::ToInt64Microseconds(reconnect_delay_ / 2))));
  reconnect_delay_ = std::min(reconnect_delay_ * 2, options_.reconnect_max);
  reconnect_timer_.ArmAfter(wait, event::TimerCallback::Bind<&DecisionClient::Connect>(this));
}

void DecisionClient::FailAll(const absl::Status& status) {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) {
    if (stopped_) {
      p.callback(status);
    } else {
      AnswerFromTable(*p.request, p.recycle, DecisionSource::kStale, p.callback,
                      [&status] { return status; });
    }
  }
}

void DecisionClient::ScheduleSweep() {
  const absl::Duration period = std::max(absl::Milliseconds(1), options_.deadline / 10);
  sweep_timer_.ArmAfter(period, event::TimerCallback::Bind<&DecisionClient::OnSweepTimer>(this));
}

void DecisionClient::OnSweepTimer() {
  Sweep();
  ScheduleSweep();
}

void DecisionClient::Sweep() {
  const SteadyTime now = SteadyNow();
  // A server that stops answering (hung, stopped, or a network that drops everything) keeps
  // its TCP connection open: only its silence tells. Tear the stream down and subscribe again.
  if (reactor_ != nullptr && !stopped_) {
    const SteadyTime since = state_ == State::kConnected ? last_heard_ : connect_started_;
    if (now - since > Chrono(options_.silence_timeout)) {
      LogWarning("decision stream silent for ", absl::FormatDuration(options_.silence_timeout),
                 ": reconnecting");
      state_ = State::kDisconnected;
      reactor_->Cancel();
    }
  }
  std::vector<Pending> expired;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.deadline <= now) {
      expired.push_back(std::move(it->second));
      pending_.erase(it++);
    } else {
      ++it;
    }
  }
  if (!expired.empty()) unanswered_since_ = now;
  for (Pending& p : expired) {
    AnswerFromTable(*p.request, p.recycle, DecisionSource::kStale, p.callback,
                    [] { return absl::DeadlineExceededError("no decision within the deadline"); });
  }
}

}  // namespace sluice::gateway
