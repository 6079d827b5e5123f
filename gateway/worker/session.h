#pragma once

#include <array>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gateway/http/beast.h"
#include "gateway/http/http1_codec.h"
#include "gateway/http/message_collector.h"
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
  // How one read of the client ended.
  enum class ClientRead {
    kOk,       // bytes read and decoded (maybe no new event: a partial head or chunk)
    kTimeout,  // nothing within the timeout; the connection is still open
    kClosed,   // the client closed or reset the connection between requests
    kCut,      // ... or in the middle of a request
    kInvalid,  // the bytes are not HTTP/1.1 we accept: decoder_.error() says what
  };

  net::asio::awaitable<bool> HandleOne();
  // Reads once from the client within `timeout` and decodes what arrived. A timeout cancels
  // the read, not the connection, so that the client can still be answered 408.
  net::asio::awaitable<ClientRead> ReadClient(absl::Duration timeout);
  // Decodes bytes read earlier (a pipelined request, or the first read of a connection).
  ClientRead DecodeBuffered();
  v1::DecideRequest DescribeRequest(const http::HeaderMap& request, const Exchange& ex);
  net::asio::awaitable<void> Execute(Exchange& ex);
  net::asio::awaitable<void> Forward(Exchange& ex, Target& target);
  net::asio::awaitable<AttemptOutcome> RunAttempt(Exchange& ex, Target& target, uint32_t endpoint,
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
  static net::asio::awaitable<void> RunMirror(Worker& worker, Target target, uint32_t endpoint,
                                              absl::Duration timeout, bool head,
                                              std::shared_ptr<const std::string> request);
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
  // Bytes read from the client and not yet decoded: the rest of a read that held more than
  // one request (pipelining), left while the request before it is served.
  std::string in_;
  std::array<char, 16 * 1024> read_chunk_;  // what each read fills
  // The request being served, as the decoder delivers it. Its head is edited in place into
  // the upstream request (the decoder keeps it until the next request starts).
  http::MessageCollector<http::RequestHead> request_;
  http::RequestDecoder decoder_;
  std::string out_;  // bytes for the client, encoded; capacity kept between responses
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
