#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gateway/http/beast.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::gateway {

class Worker;

// One downstream HTTP/1.1 connection: requests are read, decided, executed and answered
// strictly in order (pipelined requests wait in the read buffer), with Envoy's limits and
// timers against slow or malformed clients.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Worker& worker, net::tcp::socket socket);
  ~Session();

  // Serves requests until the client leaves, asks to close, errs, or the gateway drains.
  net::asio::awaitable<void> Run();
  // During a drain: a connection waiting for its next request is closed now.
  void CloseIfIdle();

 private:
  struct Exchange;
  struct Target;
  struct AttemptOutcome;
  struct Interrupt;
  using RequestParser = net::http::request_parser<net::http::buffer_body>;

  net::asio::awaitable<bool> HandleOne();
  // Reads the request's head (or the next piece of its body) within `timeout`; a timeout is
  // beast::error::timeout with the connection still open.
  net::asio::awaitable<boost::system::error_code> ReadClient(RequestParser& parser,
                                                             absl::Duration timeout,
                                                             bool header_only);
  // A request that cannot be trusted to end where we think: answered with `status` (flag
  // DPE), logged, and the connection closed (no smuggling). Returns false, for HandleOne.
  net::asio::awaitable<bool> RefuseAndClose(Exchange& ex,
                                            const net::http::request_header<>& request,
                                            unsigned status, std::string body);
  // The request as the decider sees it: the headers the current table's rules read.
  v1::DecideRequest DescribeRequest(const net::http::fields& request, const Exchange& ex);
  net::asio::awaitable<void> Execute(RequestParser& parser, Exchange& ex);
  net::asio::awaitable<void> Forward(RequestParser& parser, Exchange& ex, Target& target);
  net::asio::awaitable<AttemptOutcome> RunAttempt(RequestParser& parser, Exchange& ex,
                                                  Target& target, uint32_t endpoint,
                                                  uint32_t attempt, Interrupt& interrupt);
  static net::asio::awaitable<bool> AcquireConnection(Worker& worker, Target& target,
                                                      uint32_t endpoint, bool streaming,
                                                      Interrupt& interrupt, AttemptOutcome& out);
  enum class RelayEnd { kComplete, kUpstreamCut, kClientGone };
  net::asio::awaitable<RelayEnd> Relay(AttemptOutcome& outcome, Exchange& ex, Target& target);
  // While a request is forwarded: a client that closes or resets its connection fires
  // `interrupt` (Envoy resets the upstream request of a client that disconnects). Bytes of a
  // pipelined request end the watch: a close behind them shows only once they are read.
  void WatchClient(std::shared_ptr<Interrupt> interrupt);
  net::asio::awaitable<void> LocalReply(Exchange& ex, unsigned status, std::string body,
                                        bool overloaded = false, std::string location = "");
  // Fire and forget, through the mirror cluster's pool and limits (Envoy sends shadow
  // requests through the cluster's connection pool and circuit breakers like any other).
  void Mirror(const Exchange& ex, Target target, uint32_t endpoint, absl::Duration timeout);
  static net::asio::awaitable<void> RunMirror(
      Worker& worker, Target target, uint32_t endpoint, absl::Duration timeout,
      std::shared_ptr<net::http::request<net::http::string_body>> request);
  void Finish(Exchange& ex);
  // One attempt's outcome, on the decision stream (nothing without a decision).
  void Report(const Exchange& ex, uint32_t cluster_id, uint32_t endpoint, uint32_t attempt,
              v1::Outcome outcome, uint32_t status, absl::Duration latency,
              const std::string& flags, bool final);
  // A decided request that never reached its endpoint still ends its decision on the server
  // (which counts it as in flight until then).
  void ReportNotSent(const Exchange& ex, const char* flags);

  Worker& worker_;
  net::beast::tcp_stream stream_;
  net::beast::flat_buffer buffer_;
  // Bounds each read of a request's head or body; a read that times out is cancelled (not
  // the socket closed), so the client can still be answered 408.
  net::asio::steady_timer read_timer_;
  bool read_timed_out_ = false;
  uint64_t read_generation_ = 0;  // a timer handler of an earlier read does nothing
  std::string client_address_;
  bool idle_ = false;
  bool reset_on_close_ = false;  // a response was cut: close with RST, not FIN
  uint64_t served_ = 0;
};

}  // namespace sluice::gateway
