#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/decision/local_decider.h"
#include "gateway/event/dispatcher.h"
#include "gateway/event/timer_wheel.h"
#include "grpcpp/grpcpp.h"
#include "sluice/v1/decision.grpc.pb.h"

namespace sluice::gateway {

// A gateway worker's channel to sluice-server: one DecisionService.Stream, used from the
// worker's event loop (Dispatcher) only. gRPC's callbacks, on gRPC's threads, only post back
// to the loop.
//
// The server pushes the decision table of every configuration version and every endpoint
// health change on the stream; the client installs them in its LocalDecider and acknowledges
// each. In server mode requests made during one turn of the event loop travel in one message
// and are decided by the server; in local mode they are decided here at once. When the
// server cannot be reached (stream down, silent, or a decision past its deadline) either
// mode decides from the last table, as Envoy keeps its last configuration, unless the table
// is older than `max_table_age`. Every request gets an answer: a decision, or an error when
// there is no usable table, so the gateway can apply its failure policy and never hangs a
// client. A broken or silent stream is reopened with jittered exponential back-off.
class DecisionClient : public std::enable_shared_from_this<DecisionClient> {
 public:
  struct Options {
    v1::DecisionMode mode = v1::DECISION_MODE_SERVER;
    absl::Duration deadline = absl::Milliseconds(250);
    // A table whose server has been unreachable for longer is not used.
    absl::Duration max_table_age = absl::InfiniteDuration();
    // A stream that brings no message (the server sends keepalives) for this long is torn
    // down and opened again.
    absl::Duration silence_timeout = absl::Seconds(3);
    absl::Duration reconnect_initial = absl::Milliseconds(50);
    absl::Duration reconnect_max = absl::Seconds(2);
    std::string gateway_name = "sluice-gateway";
    // Attempt reports that would travel alone (no decision or acknowledgement to ride with:
    // local mode, or a quiet moment in server mode) wait up to this long for company, so that
    // under load the server handles one message per window rather than one per loop turn
    // (its cost is per message). Zero: sent at the next turn of the loop.
    absl::Duration report_delay = absl::Milliseconds(5);
    // Held by each stream until gRPC has finished with it (the owner of the dispatcher, when
    // the client may be destroyed before its streams are done): the stream's callbacks post
    // to the loop, which must then still exist.
    std::shared_ptr<void> loop_keepalive;
  };

  enum class State { kConnecting, kConnected, kDisconnected };

  using Answer = DecisionAnswer;
  using Callback = std::function<void(absl::StatusOr<Answer>)>;

  static std::shared_ptr<DecisionClient> Create(event::Dispatcher& dispatcher,
                                                std::shared_ptr<grpc::Channel> channel,
                                                Options options);
  ~DecisionClient();

  // All of the following run on the dispatcher's thread.
  void Start();
  void Stop();
  // Asks for a decision; the id is assigned here. `callback` runs on the loop: inside
  // Decide when the answer is known at once (local mode, or no usable stream), else from
  // the loop's handling of the server's message or of the deadline.
  // The request stays the caller's and must stay as it is until the callback has run: it is
  // read in place (decided here, or copied into the stream's next message, whose elements and
  // their buffers are reused) and read again for a stale answer if the server fails us, so a
  // caller reusing one message allocates nothing per request. `recycle`, when given, is a
  // spent decision (the caller's last): the answer is written into its message, or the
  // server's answer leaves its buffers for the next one to be read into, and it is left
  // empty. It too must stay until the callback has run.
  void Decide(v1::DecideRequest& request, Callback callback, v1::Decision* recycle = nullptr);
  // A request the client keeps until the answer (for callers without one of their own).
  void Decide(v1::DecideRequest&& request, Callback callback);
  // Queues a copy of an attempt report; it travels with the next message. Copied into a
  // message element kept from an earlier write: no allocation once the stream has warmed up.
  void Report(const v1::AttemptReport& report);

  State state() const { return state_; }
  v1::DecisionMode mode() const { return options_.mode; }
  // Version of the installed decision table (0: none yet).
  uint64_t table_version() const { return local_.version(); }
  // How long the installed table has gone unconfirmed: zero while the stream is up, else the
  // time since the server was last heard. InfiniteDuration without a table.
  absl::Duration table_age() const;
  // Decisions are being taken from a table the server cannot confirm (within max_table_age).
  bool stale() const { return state_ != State::kConnected && TableUsable(); }
  // The server let a decision pass its deadline within the last kUnansweredMemory and has
  // answered none in time since: the stream may be up and still be of no use (a hung or
  // overloaded server). Health reports it as degraded. Without traffic it fades, and a new
  // stream starts afresh.
  bool unanswered() const;
  // No stream exists (never started, or the last one has finished after Stop).
  bool stream_closed() const { return reactor_ == nullptr; }
  uint64_t messages_sent() const { return messages_sent_; }
  // Decide requests and attempt reports those messages carried.
  uint64_t decide_requests_sent() const { return decide_requests_sent_; }
  uint64_t reports_sent() const { return reports_sent_; }
  // Decisions that arrived after their request was answered from the table (each reported
  // NOT_SENT so the server releases its load), and reports dropped by a stalled stream.
  uint64_t late_decisions() const { return late_decisions_; }
  uint64_t reports_dropped() const { return reports_dropped_; }
  // Header names the current configuration's match rules read (empty before a table).
  const std::shared_ptr<const v1::RouteTable>& latest_table() const { return latest_table_; }

 private:
  class Reactor;
  using SteadyTime = std::chrono::steady_clock::time_point;
  struct Pending {
    Callback callback;
    SteadyTime deadline;
    // The caller's, to decide from the table if the server fails us.
    const v1::DecideRequest* request = nullptr;
    v1::Decision* recycle = nullptr;
    std::unique_ptr<v1::DecideRequest> owned;  // what `request` points to, if ours
  };
  void Decide(v1::DecideRequest& request, std::unique_ptr<v1::DecideRequest> owned,
              Callback callback, v1::Decision* recycle);

  DecisionClient(event::Dispatcher& dispatcher, std::shared_ptr<grpc::Channel> channel,
                 Options options);
  void Connect();
  // The next turn of the loop: for decisions and acknowledgements.
  void ScheduleFlush();
  // Within Options::report_delay: for reports alone.
  void ScheduleReportFlush();
  void OnReportTimer();
  // The batch holds reports and nothing that must go at once.
  bool OnlyReports() const;
  void Flush();
  void OnWriteDone(bool ok);
  void OnMessage(v1::ServerMessage& message);
  void OnReadsEnded();
  void OnStreamDone(Reactor* reactor, const grpc::Status& status);
  void FailAll(const absl::Status& status);
  void QueueReport(const v1::AttemptReport& report);
  // Answers `callback` from the table when it is usable, else with `error`.
  void AnswerFromTable(const v1::DecideRequest& request, v1::Decision* recycle,
                       DecisionSource source, const Callback& callback,
                       absl::FunctionRef<absl::Status()> error);
  bool TableUsable() const;
  void Acknowledge();
  void Sweep();
  void ScheduleSweep();
  void OnSweepTimer();
  void OnFlushTimer();

  event::Dispatcher& dispatcher_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DecisionService::Stub> stub_;
  Options options_;
  State state_ = State::kDisconnected;
  bool stopped_ = false;

  Reactor* reactor_ = nullptr;  // owned by gRPC until OnDone; deleted on the loop after it
  bool reads_ended_ = false;
  bool write_in_flight_ = false;
  bool flush_scheduled_ = false;  // flush_timer_ armed for the next turn of the loop
  bool reports_due_ = false;      // the report delay has run out: reports go even alone
  v1::GatewayMessage batch_;
  uint64_t next_id_ = 0;
  uint64_t messages_sent_ = 0;
  uint64_t decide_requests_sent_ = 0;
  uint64_t reports_sent_ = 0;
  absl::flat_hash_map<uint64_t, Pending> pending_;
  std::map<uint64_t, std::shared_ptr<const v1::RouteTable>> tables_;  // a few recent versions
  std::shared_ptr<const v1::RouteTable> latest_table_;

  event::Timer sweep_timer_;
  event::Timer reconnect_timer_;
  // Zero-delay: the requests queued during one turn of the loop go out in one message.
  event::Timer flush_timer_;
  absl::Duration reconnect_delay_;
  // The last refusal (PERMISSION_DENIED, UNAUTHENTICATED) logged, so each is logged once.
  std::string last_refusal_;
  absl::BitGen rng_;
  absl::InsecureBitGen decide_rng_;  // the local decider's draws: fast, not for secrets
  LocalDecider local_{decide_rng_};
  uint64_t endpoint_changes_applied_ = 0;
  uint64_t late_decisions_ = 0;
  std::optional<SteadyTime> unanswered_since_;  // the last miss not followed by an answer
  uint64_t reports_dropped_ = 0;
  SteadyTime last_heard_{};       // the last message from the server
  SteadyTime connect_started_{};  // when the current stream was opened
};

}  // namespace sluice::gateway
