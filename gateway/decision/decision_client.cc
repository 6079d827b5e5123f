#include "gateway/decision/decision_client.h"

#include "absl/random/distributions.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sluice::gateway {
namespace {

constexpr size_t kTablesKept = 4;

}  // namespace

// Lives on gRPC's threads. It touches the client only by posting to the client's loop, and
// holds the RPC open (AddHold) until the loop says it will not write any more, so a write
// can never race the end of the stream.
class DecisionClient::Reactor final
    : public grpc::ClientBidiReactor<v1::GatewayMessage, v1::ServerMessage> {
 public:
  Reactor(std::weak_ptr<DecisionClient> owner, net::asio::io_context& io,
          v1::DecisionService::Stub& stub)
      : owner_(std::move(owner)), io_(io) {
    stub.async()->Stream(&context_, this);
    AddHold();
    StartRead(&in_);
    StartCall();
  }

  void Write(v1::GatewayMessage message) {
    out_ = std::move(message);
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
    auto message = std::make_shared<v1::ServerMessage>();
    message->Swap(&in_);
    Post([message](DecisionClient& c) { c.OnMessage(*message); });
    StartRead(&in_);
  }
  void OnDone(const grpc::Status& status) override {
    auto owner = owner_.lock();
    if (owner == nullptr) {
      delete this;
      return;
    }
    net::asio::post(io_, [owner, status, this] {
      owner->OnStreamDone(this, status);
      delete this;
    });
  }

 private:
  template <typename F>
  void Post(F f) {
    net::asio::post(io_, [weak = owner_, f = std::move(f)] {
      if (auto owner = weak.lock()) f(*owner);
    });
  }

  std::weak_ptr<DecisionClient> owner_;
  net::asio::io_context& io_;
  grpc::ClientContext context_;
  v1::GatewayMessage out_;
  v1::ServerMessage in_;
};

std::shared_ptr<DecisionClient> DecisionClient::Create(net::asio::io_context& io,
                                                       std::shared_ptr<grpc::Channel> channel,
                                                       Options options) {
  return std::shared_ptr<DecisionClient>(
      new DecisionClient(io, std::move(channel), std::move(options)));
}

DecisionClient::DecisionClient(net::asio::io_context& io, std::shared_ptr<grpc::Channel> channel,
                               Options options)
    : io_(io),
      channel_(std::move(channel)),
      stub_(v1::DecisionService::NewStub(channel_)),
      options_(std::move(options)),
      sweep_timer_(io),
      reconnect_timer_(io),
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
  sweep_timer_.cancel();
  reconnect_timer_.cancel();
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
  reactor_ = new Reactor(weak_from_this(), io_, *stub_);
  batch_.set_gateway_name(options_.gateway_name);
  ScheduleFlush();
}

void DecisionClient::Decide(v1::DecideRequest request, Callback callback) {
  if (state_ == State::kDisconnected || stopped_) {
    // Fail at once: the caller applies its policy now rather than after the deadline.
    callback(absl::UnavailableError("decision service unreachable"));
    return;
  }
  const uint64_t id = ++next_id_;
  request.set_id(id);
  *batch_.add_decide() = std::move(request);
  pending_.emplace(id, Pending{std::move(callback), absl::Now() + options_.deadline});
  ScheduleFlush();
}

void DecisionClient::Report(v1::AttemptReport report) {
  if (reactor_ == nullptr) return;  // nobody to tell; the server releases the stream's load
  *batch_.add_reports() = std::move(report);
  ScheduleFlush();
}

// Requests queued during this turn of the loop go out together: the flush runs after the
// handlers already queued.
void DecisionClient::ScheduleFlush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  net::asio::post(io_, [weak = weak_from_this()] {
    if (auto self = weak.lock()) {
      self->flush_scheduled_ = false;
      self->Flush();
    }
  });
}

void DecisionClient::Flush() {
  if (reactor_ == nullptr || reads_ended_ || write_in_flight_) return;
  if (batch_.decide_size() == 0 && batch_.reports_size() == 0 && batch_.gateway_name().empty()) {
    return;
  }
  write_in_flight_ = true;
  ++messages_sent_;
  v1::GatewayMessage message;
  message.Swap(&batch_);
  reactor_->Write(std::move(message));
}

void DecisionClient::OnWriteDone(bool ok) {
  write_in_flight_ = false;
  if (!ok || reads_ended_) {
    if (reads_ended_ && reactor_ != nullptr) reactor_->ReleaseHold();
    return;
  }
  Flush();  // what queued up while the write was in flight
}

void DecisionClient::OnMessage(v1::ServerMessage& message) {
  if (message.has_table()) {
    auto table = std::make_shared<v1::RouteTable>();
    table->Swap(message.mutable_table());
    tables_[table->version()] = table;
    latest_table_ = table;
    while (tables_.size() > kTablesKept) tables_.erase(tables_.begin());
    if (state_ == State::kConnecting) {
      state_ = State::kConnected;
      reconnect_delay_ = options_.reconnect_initial;
    }
  }
  for (v1::Decision& d : *message.mutable_decisions()) {
    auto it = pending_.find(d.id());
    if (it == pending_.end()) continue;  // already timed out
    Callback callback = std::move(it->second.callback);
    pending_.erase(it);
    auto table = tables_.find(d.config_version());
    if (table == tables_.end() && d.action() == v1::FORWARD) {
      callback(absl::InternalError(absl::StrCat("decision for config version ", d.config_version(),
                                                " came without its table")));
      continue;
    }
    Answer answer;
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
  reconnect_timer_.expires_after(absl::ToChronoMicroseconds(wait));
  reconnect_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->Connect();
  });
}

void DecisionClient::FailAll(const absl::Status& status) {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) p.callback(status);
}

void DecisionClient::ScheduleSweep() {
  const absl::Duration period = std::max(absl::Milliseconds(1), options_.deadline / 10);
  sweep_timer_.expires_after(absl::ToChronoMicroseconds(period));
  sweep_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) {
      self->Sweep();
      self->ScheduleSweep();
    }
  });
}

void DecisionClient::Sweep() {
  const absl::Time now = absl::Now();
  std::vector<Callback> expired;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.deadline <= now) {
      expired.push_back(std::move(it->second.callback));
      pending_.erase(it++);
    } else {
      ++it;
    }
  }
  for (Callback& cb : expired) {
    cb(absl::DeadlineExceededError("no decision within the deadline"));
  }
}

}  // namespace sluice::gateway
