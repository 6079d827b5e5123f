#pragma once

#include <array>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gateway/event/async_socket.h"
#include "gateway/event/task.h"
#include "gateway/event/timer_wheel.h"
#include "gateway/http/http1_codec.h"
#include "gateway/http/message_collector.h"
#include "gateway/proxy/router.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::gateway {

class Worker;

// One downstream HTTP/1.1 connection on the worker's event loop: requests are read,
// decided, executed and answered strictly in order (pipelined requests wait in the read
// buffer), with Envoy's limits and timers against slow or malformed clients. The per-request
// policy (attempts, retries, back-off, the route timer) is the Router's; the session is the
// downstream codec and the upstream requests the router asks for.
class Session {
 public:
  Session(Worker& worker, std::unique_ptr<event::AsyncSocket> socket, std::string client_address);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Serves requests until the client leaves, asks to close, errs, or the gateway drains.
  // Owns the session: it ends by destroying it.
  static event::Task<void> Serve(std::unique_ptr<Session> session);
  // During a drain: a connection waiting for its next request is closed (at the next turn of
  // the loop, not inside the caller).
  void CloseIfIdle();

  struct Target;
  struct AttemptControl;
  struct AttemptOutcome;
  // Envoy's HTTP/1.1 pool admission and connect for one request of `target` to `endpoint`,
  // shared by attempts and mirrors: on success `out.connection` is open and counted;
  // otherwise `out` says why (overflow, connect or DNS failure, interrupted, or a streamed
  // request's idle timeout while queued).
  static event::Task<bool> AcquireConnection(Worker& worker, Target& target, uint32_t endpoint,
                                             bool streaming, AttemptControl& control,
                                             AttemptOutcome& out);

 private:
  struct Exchange;
  class Attempts;
  // How one read of the client ended.
  enum class ClientRead {
    kOk,       // bytes read and decoded (maybe no new event: a partial head or chunk)
    kTimeout,  // nothing within the timeout; the connection is still open
    kClosed,   // the client closed or reset the connection between requests
    kCut,      // ... or in the middle of a request
    kInvalid,  // the bytes are not HTTP/1.1 we accept: decoder_.error() says what
  };

  event::Task<void> Run();
  event::Task<bool> HandleOne();
  // Reads once from the client within `timeout` and decodes what arrived. A timeout cancels
  // the read, not the connection, so that the client can still be answered 408.
  event::Task<ClientRead> ReadClient(absl::Duration timeout);
  // Writes `data` to the client, each wait for room bounded by the idle timeout. False when
  // the client is gone or stopped reading.
  event::Task<bool> WriteClient(absl::string_view data);
  // Decodes bytes read earlier (a pipelined request, or the first read of a connection).
  ClientRead DecodeBuffered();
  // The decision's question, written into `ask` (the session's own, reused).
  void DescribeRequest(const http::HeaderMap& request, const Exchange& ex, v1::DecideRequest& ask);
  event::Task<void> Execute(Exchange& ex);
  event::Task<void> Forward(Exchange& ex, Target& target);
  enum class RelayEnd { kComplete, kUpstreamCut, kClientGone };
  event::Task<RelayEnd> Relay(AttemptOutcome& outcome, Exchange& ex, Target& target,
                              AttemptControl& control);
  event::Task<void> LocalReply(Exchange& ex, unsigned status, std::string body,
                               bool overloaded = false, std::string location = "");
  // Fire and forget, through the mirror cluster's pool and limits (Envoy sends shadow
  // requests through the cluster's connection pool and circuit breakers like any other).
  void Mirror(const Exchange& ex, Target target, uint32_t endpoint, absl::Duration timeout);
  static event::Task<void> RunMirror(Worker& worker, Target target, uint32_t endpoint,
                                     absl::Duration timeout, bool head, std::string request);
  void Finish(Exchange& ex);
  // One attempt's outcome, on the decision stream (nothing without a decision).
  void Report(const Exchange& ex, uint32_t cluster_id, uint32_t endpoint, uint32_t attempt,
              v1::Outcome outcome, uint32_t status, absl::Duration latency,
              const std::string& flags, bool final);
  // A decided request that never reached its endpoint still ends its decision on the server
  // (which counts it as in flight until then).
  void ReportNotSent(const Exchange& ex, const char* flags);

  // While a request is forwarded: a client that closes or resets its connection tells the
  // router (Envoy resets the upstream request of a client that disconnects). Bytes of a
  // pipelined request are not a departure.
  void WatchClient(Router* router);
  void StopWatchingClient();
  void OnClientHangup();
  void OnClientGone();
  void OnReadTimeout();
  void OnWriteTimeout();

  Worker& worker_;
  std::unique_ptr<event::AsyncSocket> socket_;
  // Bytes read from the client and not yet decoded: the rest of a read that held more than
  // one request (pipelining), left while the request before it is served.
  std::string in_;
  std::array<char, 16 * 1024> read_chunk_;  // what each read fills
  // The request being served, as the decoder delivers it. Its head is edited in place into
  // the upstream request (the decoder keeps it until the next request starts).
  http::MessageCollector<http::RequestHead> request_;
  http::RequestDecoder decoder_;
  std::string out_;        // bytes for the client, encoded; capacity kept between responses
  v1::DecideRequest ask_;  // the question for the decision, reused from request to request
  // Bounds each read of a request's head or body (and the wait between requests); a read
  // that times out is cancelled, not the socket closed, so the client can still get a 408.
  event::Timer read_timer_;
  bool read_timed_out_ = false;
  event::Timer write_timer_;  // bounds each wait for room to write to the client
  // The client left while a request was forwarded: the router hears it from this timer's
  // callback, at the next turn of the loop, not inside the socket's event handling.
  event::Timer client_gone_timer_;
  Router* watching_ = nullptr;  // the router told when the client leaves
  bool client_gone_ = false;    // ... and it did, during the request being forwarded
  std::string client_address_;
  bool idle_ = false;
  bool reset_on_close_ = false;  // a response was cut: close with RST, not FIN
  uint64_t served_ = 0;
  // The request being served and where it goes, reused from request to request so that
  // their strings keep their buffers (a keep-alive connection's requests allocate nothing).
  std::unique_ptr<Exchange> exchange_;
  std::unique_ptr<Target> target_;
};

}  // namespace sluice::gateway
