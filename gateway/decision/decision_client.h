#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/http/beast.h"
#include "grpcpp/grpcpp.h"
#include "sluice/v1/decision.grpc.pb.h"

namespace sluice::gateway {

// A gateway worker's channel to sluice-server: one DecisionService.Stream, used from the
// worker's io_context only. Requests made during one turn of the event loop travel in one
// message; gRPC's callbacks, on gRPC's threads, only post back to the loop. Every request
// gets an answer: the decision, or an error once the deadline passes or the stream breaks,
// so the gateway can apply its failure policy and never hangs a client. A broken stream is
// reopened with jittered exponential back-off.
class DecisionClient : public std::enable_shared_from_this<DecisionClient> {
 public:
  struct Options {
    absl::Duration deadline = absl::Milliseconds(250);
    absl::Duration reconnect_initial = absl::Milliseconds(50);
    absl::Duration reconnect_max = absl::Seconds(2);
    std::string gateway_name = "sluice-gateway";
  };

  enum class State { kConnecting, kConnected, kDisconnected };

  // A decision with the route table of its configuration version.
  struct Answer {
    v1::Decision decision;
    std::shared_ptr<const v1::RouteTable> table;
  };
  using Callback = std::function<void(absl::StatusOr<Answer>)>;

  static std::shared_ptr<DecisionClient> Create(net::asio::io_context& io,
                                                std::shared_ptr<grpc::Channel> channel,
                                                Options options);
  ~DecisionClient();

  // All of the following run on the io_context's thread.
  void Start();
  void Stop();
  // Asks for a decision; the id is assigned here. `callback` runs on the io_context.
  void Decide(v1::DecideRequest request, Callback callback);
  // Queues an attempt report; it travels with the next message.
  void Report(v1::AttemptReport report);

  State state() const { return state_; }
  // No stream exists (never started, or the last one has finished after Stop).
  bool stream_closed() const { return reactor_ == nullptr; }
  uint64_t messages_sent() const { return messages_sent_; }
  // Header names the current configuration's match rules read (empty before a table).
  const std::shared_ptr<const v1::RouteTable>& latest_table() const { return latest_table_; }

 private:
  class Reactor;
  struct Pending {
    Callback callback;
    absl::Time deadline;
  };

  DecisionClient(net::asio::io_context& io, std::shared_ptr<grpc::Channel> channel,
                 Options options);
  void Connect();
  void ScheduleFlush();
  void Flush();
  void OnWriteDone(bool ok);
  void OnMessage(v1::ServerMessage& message);
  void OnReadsEnded();
  void OnStreamDone(Reactor* reactor, const grpc::Status& status);
  void FailAll(const absl::Status& status);
  void Sweep();
  void ScheduleSweep();

  net::asio::io_context& io_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DecisionService::Stub> stub_;
  Options options_;
  State state_ = State::kDisconnected;
  bool stopped_ = false;

  Reactor* reactor_ = nullptr;  // owned by gRPC until OnDone; deleted on the loop after it
  bool reads_ended_ = false;
  bool write_in_flight_ = false;
  bool flush_scheduled_ = false;
  v1::GatewayMessage batch_;
  uint64_t next_id_ = 0;
  uint64_t messages_sent_ = 0;
  absl::flat_hash_map<uint64_t, Pending> pending_;
  std::map<uint64_t, std::shared_ptr<const v1::RouteTable>> tables_;  // a few recent versions
  std::shared_ptr<const v1::RouteTable> latest_table_;

  net::asio::steady_timer sweep_timer_;
  net::asio::steady_timer reconnect_timer_;
  absl::Duration reconnect_delay_;
  absl::BitGen rng_;
};

}  // namespace sluice::gateway
