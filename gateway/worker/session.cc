#include "gateway/worker/session.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

#include "absl/cleanup/cleanup.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gateway/event/socket.h"
#include "gateway/http/headers.h"
#include "gateway/observability/access_log.h"
#include "gateway/proxy/request_flow.h"
#include "gateway/upstream/dns_cache.h"
#include "gateway/worker/worker.h"
#include "lib/common/log.h"
#include "lib/common/utf8.h"

namespace sluice::gateway {

using event::IoResult;

namespace {

// A mirrored request on a route without a timeout ends after this (Envoy would wait forever).
constexpr absl::Duration kMirrorTimeout = absl::Seconds(30);

// Time since `start` on the monotonic clock: an NTP step cannot make it negative or huge.
absl::Duration Since(event::TimeSource& clock, event::MonotonicTime start) {
  return absl::FromChrono(clock.Now() - start);
}

// A timer callback that cancels what waits on a socket with ETIMEDOUT (a connect, a write to
// a peer that stopped reading).
event::TimerCallback TimeOut(event::AsyncSocket* socket) {
  return event::TimerCallback(
      [](void* s) { static_cast<event::AsyncSocket*>(s)->Cancel(ETIMEDOUT); }, socket);
}

// Asks the worker's decision stream from a coroutine. An answer known at once (local mode,
// no stream) resumes nothing: the coroutine goes on without suspending. A later one (the
// server's message, a deadline) resumes it from a zero-delay timer, at the next turn of the
// loop, because the client may be walking its pending table when it answers. Lives in the
// awaiting frame; nothing is allocated.
class DecideAwaiter {
 public:
  DecideAwaiter(DecisionClient& client, event::TimerWheel& wheel, v1::DecideRequest& request,
                v1::Decision& recycle)
      : client_(client), resume_(wheel), request_(request), recycle_(recycle) {}

  bool await_ready() {
    deciding_ = true;
    client_.Decide(
        request_,
        [this](absl::StatusOr<DecisionClient::Answer> answer) {
          answer_ = std::move(answer);
          if (!deciding_) {
            resume_.ArmAfter(event::MonotonicDuration::zero(),
                             event::TimerCallback::Bind<&DecideAwaiter::Resume>(this));
          }
        },
        &recycle_);
    deciding_ = false;
    return answer_.has_value();
  }
  void await_suspend(std::coroutine_handle<> waiting) { waiting_ = waiting; }
  absl::StatusOr<DecisionClient::Answer> await_resume() { return std::move(*answer_); }

 private:
  void Resume() { waiting_.resume(); }

  DecisionClient& client_;
  event::Timer resume_;
  v1::DecideRequest& request_;
  v1::Decision& recycle_;
  bool deciding_ = false;
  std::optional<absl::StatusOr<DecisionClient::Answer>> answer_;
  std::coroutine_handle<> waiting_;
};

// Whether every text field of `ask` is UTF-8, as the proto requires.
bool DescribableAsUtf8(const v1::DecideRequest& ask) {
  if (FindInvalidUtf8(ask.authority()) || FindInvalidUtf8(ask.path()) ||
      FindInvalidUtf8(ask.method())) {
    return false;
  }
  for (const v1::Header& h : ask.headers()) {
    if (FindInvalidUtf8(h.name()) || FindInvalidUtf8(h.value())) return false;
  }
  return true;
}

std::string HeaderValue(const http::HeaderMap& headers, absl::string_view name) {
  std::optional<absl::string_view> value = headers.Get(name);
  return value.has_value() ? std::string(*value) : std::string();
}

// Into `out`'s own buffer (kept from the connection's previous request).
void CopyHeaderValue(const http::HeaderMap& headers, absl::string_view name, std::string& out) {
  std::optional<absl::string_view> value = headers.Get(name);
  if (value.has_value()) {
    out.assign(value->data(), value->size());
  } else {
    out.clear();
  }
}

// What a client is told when its request cannot be decoded, by the decoder's status.
std::string RefusalBody(int status) {
  switch (status) {
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Bad Request";
  }
}

// Decodes what `in` holds; the bytes consumed leave it.
template <typename Decoder>
absl::Status DecodeFrom(Decoder& decoder, std::string& in) {
  if (in.empty()) return absl::OkStatus();
  size_t consumed = 0;
  absl::Status status = decoder.Decode(in, &consumed);
  in.erase(0, consumed);
  return status;
}

// Decodes `read` (just read into a scratch buffer) after what `in` holds; what is left over
// stays in `in`. The common case, nothing left from before, decodes the scratch in place.
template <typename Decoder>
absl::Status DecodeRead(Decoder& decoder, std::string& in, absl::string_view read) {
  if (!in.empty()) {
    in.append(read.data(), read.size());
    return DecodeFrom(decoder, in);
  }
  size_t consumed = 0;
  absl::Status status = decoder.Decode(read, &consumed);
  in.assign(read.data() + consumed, read.size() - consumed);
  return status;
}

// Appends body bytes to `out` in the message's framing: as they are, or as one chunk.
void AppendBody(absl::string_view data, bool chunked, std::string* out) {
  if (chunked) {
    http::EncodeChunk(data, out);
  } else {
    out->append(data.data(), data.size());
  }
}

// The end of a chunked body, with the trailers that came with it, if any.
void AppendLastChunk(const http::HeaderMap* trailers, std::string* out) {
  if (trailers != nullptr) {
    http::EncodeLastChunk(*trailers, out);
  } else {
    http::EncodeLastChunk(out);
  }
}

// Reads once from an upstream connection and decodes what arrived. False when the
// connection failed, was aborted, or the response cannot be decoded; an end of stream that
// completes a body delimited by the close is not a failure.
event::Task<bool> ReadUpstream(UpstreamConnection& conn) {
  if (conn.aborted) co_return false;
  const IoResult r = co_await conn.socket->Read(conn.read_chunk.data(), conn.read_chunk.size());
  if (conn.aborted) co_return false;
  if (r.kind == IoResult::Kind::kEof) co_return conn.decoder.DecodeEof().ok();
  if (!r.data()) co_return false;
  co_return DecodeRead(conn.decoder, conn.in, {conn.read_chunk.data(), r.bytes}).ok();
}

RetryPolicy ToRetryPolicy(const v1::RetryPolicy& p) {
  RetryPolicy out;
  out.num_retries = p.num_retries();
  out.retry_on = p.retry_on();
  out.retriable_status_codes.assign(p.retriable_status_codes().begin(),
                                    p.retriable_status_codes().end());
  out.per_try_timeout = absl::Milliseconds(p.per_try_timeout_ms());
  if (p.backoff_base_ms() > 0) out.backoff_base = absl::Milliseconds(p.backoff_base_ms());
  if (p.backoff_max_ms() > 0) out.backoff_max = absl::Milliseconds(p.backoff_max_ms());
  return out;
}

// Envoy's shadow authority: "-shadow" after the host name, before any port.
std::string ShadowAuthority(const std::string& authority) {
  const size_t colon = authority.rfind(':');
  if (colon == std::string::npos || authority.find(']', colon) != std::string::npos) {
    return authority + "-shadow";
  }
  return absl::StrCat(authority.substr(0, colon), "-shadow", authority.substr(colon));
}

std::string JoinFlags(const std::string& a, const std::string& b) {
  if (a.empty() || a == "-") return b.empty() ? "-" : b;
  if (b.empty() || b == "-") return a;
  return absl::StrCat(a, ",", b);
}

}  // namespace

// One request from its first byte to the end of its response: what the access log, the
// metrics and the reports need.
struct Session::Exchange {
  absl::Time start;              // the wall clock, for the access log
  event::MonotonicTime started;  // for its duration
  std::string method;
  std::string path;
  std::string authority;
  std::string request_id;
  std::string user_agent;
  std::string forwarded_for;
  std::string body;             // the retry buffer: the whole body unless `streaming`
  bool streaming = false;       // the body outgrew the retry buffer; the rest is streamed
  bool had_length = false;      // the client framed a body (Content-Length or chunked)
  bool chunked = false;         // ... with Transfer-Encoding: chunked
  bool head = false;            // a HEAD request: the response has no body
  unsigned version = 11;        // the client's HTTP version (10 or 11)
  bool body_pending = false;    // part of the client's body is still unread
  uint64_t bytes_received = 0;  // body bytes
  uint64_t bytes_sent = 0;      // body bytes
  unsigned response_code = 0;
  std::string flags = "-";
  std::string upstream_host;
  std::string upstream_service_time;
  std::string destination_host;
  std::string subset;
  bool close = false;  // close the connection after this exchange
  // The decision, for reports; none with the fallback.
  std::optional<v1::Decision> decision;
  std::shared_ptr<const v1::RouteTable> table;
  // What goes upstream. Each attempt sets its attempt count and body in place and writes it:
  // a copy per attempt would allocate every header field again.
  http::RequestHead* upstream = nullptr;
  uint64_t content_length_value = 0;  // the client's Content-Length, for a streamed body
  const v1::HeaderMutation* route_response_headers = nullptr;
  // The last request's decision, kept for the next one to be written into (its strings keep
  // their buffers). Never read.
  v1::Decision recycled;

  // Ready for the connection's next request: every field as new, except that the strings keep
  // their buffers and the decision its message, so that the requests of a keep-alive
  // connection allocate nothing here.
  void Reset() {
    Exchange fresh;
    for (auto [kept, field] : {std::pair{&method, &fresh.method},
                               {&path, &fresh.path},
                               {&authority, &fresh.authority},
                               {&request_id, &fresh.request_id},
                               {&user_agent, &fresh.user_agent},
                               {&forwarded_for, &fresh.forwarded_for},
                               {&upstream_host, &fresh.upstream_host},
                               {&upstream_service_time, &fresh.upstream_service_time},
                               {&destination_host, &fresh.destination_host},
                               {&subset, &fresh.subset}}) {
      kept->clear();
      *field = std::move(*kept);
    }
    // The retry buffer is not kept: it may have held a large body.
    if (decision.has_value()) recycled.Swap(&*decision);
    fresh.recycled.Swap(&recycled);
    *this = std::move(fresh);
  }
};

// Where a forwarded request goes and under which limits.
struct Session::Target {
  std::string cluster;
  std::string pool;  // the cluster's connection pool (PoolKey)
  uint32_t cluster_id = 0;
  std::vector<std::pair<std::string, uint32_t>> endpoints;  // address, port
  std::shared_ptr<ClusterLimits> limits;  // held: the registry keeps it while in use
  static constexpr absl::Duration kDefaultConnectTimeout = absl::Seconds(10);
  absl::Duration connect_timeout = kDefaultConnectTimeout;
  absl::Duration idle_timeout = absl::ZeroDuration();
  uint32_t max_requests_per_connection = 0;
  RequestFlow::Plan plan;
};

struct Session::AttemptOutcome {
  AttemptResult result;
  // The attempt was stopped (route timer, client gone, a mirror's timer): what it awaited
  // ended early and its result means nothing.
  bool interrupted = false;
  // A streamed request (no route timer yet) waited for a connection past the idle timeout:
  // Envoy's stream idle timeout, 408 with flag SI.
  bool stream_idle_timed_out = false;
  // The client broke off (or stalled, or sent a body we refuse) while its body was being
  // streamed: not the endpoint's doing.
  ClientRead client_read = ClientRead::kOk;
  std::unique_ptr<UpstreamConnection> connection;  // its `response` holds the head
  event::MonotonicTime headers_at;
};

// Lets the router (its route timer, the client leaving) or a mirror's timer stop whatever
// an attempt awaits: a wait for a connection or a first DNS answer, the connect, the
// exchange. Fire() only records it and acts at the next turn of the loop (Kick), so that the
// stopped coroutine never runs inside the router's or the socket's own code.
struct Session::AttemptControl {
  explicit AttemptControl(event::TimerWheel& wheel) : kick(wheel) {}

  void Fire() {
    if (fired) return;
    fired = true;
    kick.ArmAfter(event::MonotonicDuration::zero(),
                  event::TimerCallback::Bind<&AttemptControl::Kick>(this));
  }
  // Resumes at most one waiting coroutine, and touches nothing of this afterwards: it may
  // have been destroyed by then.
  void Kick() {
    if (connection != nullptr && connection->socket != nullptr) {
      connection->aborted = true;
      ::shutdown(connection->socket->fd(), SHUT_RDWR);
      connection->socket->Cancel(ECANCELED);
      return;
    }
    if (connection != nullptr) connection->aborted = true;
    if (wait != nullptr) wait->Cancel();
  }

  bool fired = false;
  UpstreamConnection* connection = nullptr;  // the attempt's, once it has one
  event::Alarm* wait = nullptr;              // queued for a connection, or for DNS
  event::Timer kick;
};

// The attempts of one request, as the router asks for them: Envoy's UpstreamRequest (pool
// admission, connect, the request written, the response head read within the per-try
// timeout).
class Session::Attempts final : public Router::Upstream {
 public:
  Attempts(Session& session, Exchange& ex, Target& target, Router& router)
      : session_(session),
        ex_(ex),
        target_(target),
        router_(router),
        control_(session.worker_.dispatcher().timers()),
        per_try_timer_(session.worker_.dispatcher().timers()),
        upload_timer_(session.worker_.dispatcher().timers()) {}
  ~Attempts() override { DiscardLast(); }

  event::Task<AttemptEnd> Attempt(uint32_t endpoint, uint32_t attempt,
                                  absl::Duration per_try) override;
  void Stop() override { control_.Fire(); }
  void Report(uint32_t endpoint, uint32_t attempt, v1::Outcome outcome, uint32_t status,
              absl::Duration latency, const std::string& flags, bool final) override {
    session_.Report(ex_, target_.cluster_id, endpoint, attempt, outcome, status, latency, flags,
                    final);
  }
  void CountRetry() override {
    session_.worker_.context().sluice_metrics->CountRetry(ex_.destination_host, ex_.subset);
  }
  void CountOverflow(const char* limit) override {
    session_.worker_.context().sluice_metrics->CountOverflow(target_.cluster, limit);
  }

  AttemptOutcome& last() { return last_; }
  AttemptControl& control() { return control_; }
  void DiscardLast() {
    if (last_.connection) session_.worker_.pool().Discard(std::move(last_.connection));
  }

 private:
  void OnPerTryTimeout() {
    per_try_fired_ = true;
    if (UpstreamConnection* conn = control_.connection; conn != nullptr && conn->socket) {
      conn->aborted = true;
      conn->socket->Cancel(ETIMEDOUT);  // last: the attempt may end inside
    }
  }

  Session& session_;
  Exchange& ex_;
  Target& target_;
  Router& router_;
  AttemptControl control_;
  // Envoy's per-try timer: from the whole request sent to the response's head.
  event::Timer per_try_timer_;
  bool per_try_fired_ = false;
  // Bounds each write of a streamed upload to an upstream that stops reading.
  event::Timer upload_timer_;
  AttemptOutcome last_;
};

namespace {

http::RequestDecoderLimits RequestLimits(const GatewayOptions& options) {
  http::RequestDecoderLimits limits;
  limits.max_header_bytes = options.max_request_headers_bytes;
  limits.max_header_count = options.max_request_header_count;
  limits.max_body_bytes = options.max_request_body_bytes;
  return limits;
}

// An endpoint's address: a numeric one as it is, a host name from the workers' DNS cache. A
// name without a result yet waits for its first resolution at most `timeout`, a wait the
// attempt's control can end (the route timer).
event::Task<absl::StatusOr<std::string>> ResolveEndpoint(Worker& worker, const std::string& host,
                                                         absl::Duration timeout,
                                                         Session::AttemptControl& control) {
  if (event::SocketAddress::Parse(host, 0).ok()) co_return host;
  DnsCache& dns = *worker.context().dns;
  std::optional<DnsCache::Result> known = dns.Lookup(host);
  if (!known.has_value()) {
    event::Alarm alarm(worker.dispatcher().timers());
    // The resolver thread posts to this worker's loop, and only through weak references:
    // the loop and this wait may both have ended by then.
    auto token = std::make_shared<event::Alarm*>(&alarm);
    dns.WhenResolved(host, [loop = worker.dispatcher_ref(), weak = std::weak_ptr(token)] {
      if (std::shared_ptr<event::Dispatcher> dispatcher = loop.lock()) {
        dispatcher->Post([weak] {
          if (auto t = weak.lock(); t != nullptr && *t != nullptr) (*t)->Cancel();
        });
      }
    });
    control.wait = &alarm;
    (void)co_await alarm.WaitFor(absl::ToChronoNanoseconds(timeout));
    control.wait = nullptr;
    *token = nullptr;
    if (control.fired) co_return absl::CancelledError("stopped");
    known = dns.Lookup(host);
    if (!known.has_value()) {
      co_return absl::DeadlineExceededError(absl::StrCat(
          "DNS resolution of ", host, " took longer than ", absl::FormatDuration(timeout)));
    }
  }
  if (!known->status.ok()) co_return known->status;
  co_return known->addresses.front();
}

}  // namespace

Session::Session(Worker& worker, std::unique_ptr<event::AsyncSocket> socket,
                 std::string client_address)
    : worker_(worker),
      socket_(std::move(socket)),
      decoder_(request_, RequestLimits(worker.context().options)),
      read_timer_(worker.dispatcher().timers()),
      write_timer_(worker.dispatcher().timers()),
      client_gone_timer_(worker.dispatcher().timers()),
      client_address_(std::move(client_address)),
      exchange_(std::make_unique<Exchange>()),
      target_(std::make_unique<Target>()) {
  worker_.Register(this);
}

Session::~Session() { worker_.Unregister(this); }

void Session::CloseIfIdle() {
  if (idle_) {
    read_timer_.ArmAfter(event::MonotonicDuration::zero(),
                         event::TimerCallback::Bind<&Session::OnReadTimeout>(this));
  }
}

void Session::OnReadTimeout() {
  read_timed_out_ = true;
  socket_->Cancel(ETIMEDOUT);  // last: the session may end inside
}

void Session::OnWriteTimeout() { socket_->Cancel(ETIMEDOUT); }

event::Task<void> Session::Serve(std::unique_ptr<Session> session) { co_await session->Run(); }

event::Task<void> Session::Run() {
  const GatewayOptions& options = worker_.context().options;
  for (;;) {
    if (in_.empty()) {
      if (worker_.context().draining.load() && served_ > 0) break;
      // Between requests the idle timeout applies; once a byte arrives, the header timeout.
      idle_ = true;
      read_timed_out_ = false;
      read_timer_.ArmAfter(options.idle_timeout,
                           event::TimerCallback::Bind<&Session::OnReadTimeout>(this));
      const IoResult r = co_await socket_->Read(read_chunk_.data(), read_chunk_.size());
      read_timer_.Cancel();
      idle_ = false;
      if (!r.data()) break;
      in_.append(read_chunk_.data(), r.bytes);
    }
    if (!co_await HandleOne()) break;
    ++served_;
  }
  if (reset_on_close_) {
    // SO_LINGER 0: the close sends RST, so the client sees a reset rather than an end.
    const linger abortive{1, 0};
    ::setsockopt(socket_->fd(), SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
  } else {
    ::shutdown(socket_->fd(), SHUT_RDWR);
  }
}

Session::ClientRead Session::DecodeBuffered() {
  return DecodeFrom(decoder_, in_).ok() ? ClientRead::kOk : ClientRead::kInvalid;
}

event::Task<bool> Session::WriteClient(absl::string_view data) {
  // A client that stops reading is given the idle timeout per write, then closed.
  write_timer_.ArmAfter(worker_.context().options.idle_timeout,
                        event::TimerCallback::Bind<&Session::OnWriteTimeout>(this));
  const IoResult r = co_await socket_->Write(data);
  write_timer_.Cancel();
  co_return r.data();
}

event::Task<bool> Session::HandleOne() {
  const GatewayOptions& options = worker_.context().options;
  Exchange& ex = *exchange_;
  ex.Reset();
  ex.start = worker_.context().clock->WallNow();
  ex.started = worker_.context().clock->Now();
  request_.Reset();
  decoder_.ResumeNextMessage();
  // Fast path: a keep-alive client's whole request usually arrived with the read that woke
  // us; it is decoded in place, with no asynchronous read and no timer.
  ClientRead read = DecodeBuffered();
  while (read == ClientRead::kOk && request_.head() == nullptr) {
    read = co_await ReadClient(options.request_header_timeout);
  }
  if (read != ClientRead::kOk) {
    if (read == ClientRead::kClosed) co_return false;
    // The request cannot be trusted to end where we think: answer and close (no smuggling).
    ex.close = true;
    ex.flags = "DPE";
    // The log names what was read of the request line.
    ex.method = decoder_.method_seen().empty() ? "-" : std::string(decoder_.method_seen());
    ex.path = std::string(decoder_.target_seen());
    if (read == ClientRead::kTimeout) {
      co_await LocalReply(ex, 408, "request header read timeout");
    } else if (read == ClientRead::kInvalid) {
      co_await LocalReply(ex, decoder_.error().status, RefusalBody(decoder_.error().status));
    } else {
      co_await LocalReply(ex, 400, "Bad Request");  // the client closed mid-head
    }
    Finish(ex);
    co_return false;
  }
  // The decoder has checked the head as RFC 9112 and Envoy want it (one Host, one framing,
  // the limits) and turned an absolute-form target into Host plus the origin form.
  http::RequestHead& request = *request_.head();
  ex.upstream = &request;
  ex.method = request.method;
  ex.path = request.target;
  ex.authority = request.authority;
  CopyHeaderValue(request.headers, "user-agent", ex.user_agent);
  ex.had_length = request.framing != http::BodyFraming::kNone;
  ex.chunked = request.framing == http::BodyFraming::kChunked;
  ex.content_length_value = request.content_length;
  ex.head = request.method == "HEAD";
  ex.version = request.version_minor == 0 ? 10 : 11;
  if (!request.keep_alive) ex.close = true;

  if (request.expect_continue && !request_.complete()) {
    // Answered here (the body is read before routing), so the upstream never sees it.
    static constexpr absl::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!co_await WriteClient(kContinue)) co_return false;
  }

  // The body, up to the retry buffer. Past it, the rest is streamed to the first attempt.
  for (;;) {
    ex.bytes_received += request_.body().size();
    if (ex.body.empty()) {
      ex.body.swap(request_.body());
    } else {
      ex.body.append(request_.body());
    }
    request_.body().clear();
    if (request_.complete()) break;
    if (ex.body.size() > options.retry_buffer_bytes) {
      ex.streaming = true;
      ex.body_pending = true;
      break;
    }
    read = co_await ReadClient(options.idle_timeout);
    if (read == ClientRead::kOk) continue;
    ex.close = true;
    if (read == ClientRead::kInvalid && decoder_.error().status == 413) {
      co_await LocalReply(ex, 413, "Payload Too Large");
    } else if (read == ClientRead::kTimeout) {
      // A body that stops arriving: Envoy's stream idle timeout answers 408 (flag SI).
      ex.flags = "SI";
      co_await LocalReply(ex, 408, "stream timeout");
    } else if (read == ClientRead::kInvalid) {
      ex.flags = "DPE";
      co_await LocalReply(ex, decoder_.error().status, RefusalBody(decoder_.error().status));
    } else {
      ex.flags = "DC";  // the client went away mid-body
    }
    Finish(ex);
    co_return false;
  }

  StripInternalRequestHeaders(request.headers);
  CopyHeaderValue(request.headers, "x-request-id", ex.request_id);
  if (ex.request_id.empty()) NewRequestId(worker_.rng(), ex.request_id);
  CopyHeaderValue(request.headers, "x-forwarded-for", ex.forwarded_for);
  if (!ex.forwarded_for.empty()) ex.forwarded_for.append(", ");
  ex.forwarded_for.append(client_address_);
  if (worker_.context().draining.load()) ex.close = true;

  co_await Execute(ex);
  // A body we did not read to its end leaves the connection unusable.
  if (!request_.complete()) ex.close = true;
  Finish(ex);
  co_return !ex.close;
}

event::Task<Session::ClientRead> Session::ReadClient(absl::Duration timeout) {
  // The timer cancels the read, not the connection, so that the client still gets its 408.
  read_timed_out_ = false;
  read_timer_.ArmAfter(timeout, event::TimerCallback::Bind<&Session::OnReadTimeout>(this));
  const IoResult r = co_await socket_->Read(read_chunk_.data(), read_chunk_.size());
  read_timer_.Cancel();
  if (r.data()) {
    co_return DecodeRead(decoder_, in_, {read_chunk_.data(), r.bytes}).ok() ? ClientRead::kOk
                                                                            : ClientRead::kInvalid;
  }
  if (read_timed_out_) co_return ClientRead::kTimeout;
  const bool mid_request = decoder_.message_in_progress();
  if (r.kind == IoResult::Kind::kEof && !decoder_.DecodeEof().ok()) co_return ClientRead::kCut;
  co_return mid_request ? ClientRead::kCut : ClientRead::kClosed;
}

void Session::DescribeRequest(const http::HeaderMap& request, const Exchange& ex,
                              v1::DecideRequest& ask) {
  // Cleared, not made anew: its strings keep their buffers from the connection's previous
  // request, so describing this one allocates nothing.
  ask.Clear();
  ask.set_authority(ex.authority);
  ask.set_method(ex.method);
  ask.set_path(ex.path);
  ask.set_scheme("http");
  ask.set_request_id(ex.request_id);
  // Only the headers the rules read: the table's names. Without a table, every header.
  const auto& latest = worker_.decisions().latest_table();
  if (latest != nullptr) {
    for (const std::string& name : latest->match_header_names()) {
      std::optional<absl::string_view> value = request.Get(name);
      if (!value.has_value()) continue;
      v1::Header* h = ask.add_headers();
      h->set_name(name);
      h->set_value(std::string(*value));
    }
  } else {
    request.ForEach([&ask](absl::string_view name, absl::string_view value) {
      v1::Header* h = ask.add_headers();
      h->set_name(absl::AsciiStrToLower(name));
      h->set_value(std::string(value));
    });
  }
}

event::Task<void> Session::Execute(Exchange& ex) {
  GatewayContext& context = worker_.context();
  http::RequestHead& upstream = *ex.upstream;

  const event::MonotonicTime asked = context.clock->Now();
  absl::StatusOr<DecisionClient::Answer> answer;
  // The server answers RESEND when the table our header names came from is older than the
  // rules it decides with; each answer brings the newer table, so a retry or two settles it.
  for (int asks = 0;; ++asks) {
    v1::DecideRequest& ask = ask_;
    DescribeRequest(upstream.headers, ex, ask);
    if (!DescribableAsUtf8(ask)) {
      // The decision API carries text as UTF-8 (proto3 strings): bytes that are not would make
      // the server drop the whole stream. RFC 3986 wants such bytes percent-encoded anyway.
      ex.flags = "DPE";
      co_await LocalReply(ex, 400, "request path or a routing header is not valid UTF-8");
      co_return;
    }
    answer = co_await DecideAwaiter(worker_.decisions(), worker_.dispatcher().timers(), ask,
                                    ex.recycled);
    if (!answer.ok() || answer->decision.action() != v1::RESEND) break;
    if (asks == 2) {
      answer = absl::UnavailableError("configuration changing faster than decisions");
      break;
    }
  }

  // The request as it goes upstream, whichever way it goes: the decoder's head, edited in
  // place (a copy would allocate every field again); what is still needed of the original
  // was kept in `ex`. Each attempt writes the framing fields itself.
  StripHopByHop(upstream.headers);
  upstream.headers.Remove("content-length");
  upstream.keep_alive = true;
  upstream.upgrade = false;
  ForwardContext forward;
  forward.client_address = client_address_;
  forward.request_id = ex.request_id;

  if (!answer.ok()) {
    context.sluice_metrics->CountDecisionFailure(
        answer.status().code() == absl::StatusCode::kDeadlineExceeded ? "deadline" : "unavailable");
    const DecisionFailurePolicy& policy = context.options.decision_failure;
    if (policy.kind == DecisionFailurePolicy::Kind::kDeny) {
      ex.flags = kDecisionUnavailableFlag;
      co_await LocalReply(ex, 503, kDecisionUnavailableBody);
      co_return;
    }
    // Fallback: one attempt, no retries or route timeout, to the configured address.
    Target target;
    target.cluster = kFallbackCluster;
    target.pool = kFallbackCluster;
    target.endpoints.emplace_back(policy.fallback_host, policy.fallback_port);
    target.limits = context.limits.Get(target.cluster);
    target.idle_timeout = absl::Hours(1);  // Envoy's default, as for a cluster without one
    ex.destination_host = absl::StrCat(policy.fallback_host, ":", policy.fallback_port);
    SetForwardingHeaders(upstream.headers, forward);
    co_await Forward(ex, target);
    ex.flags = JoinFlags(kDecisionFallbackFlag, ex.flags);
    co_return;
  }
  context.sluice_metrics->CountDecision(static_cast<size_t>(answer->source));
  if (answer->source == DecisionSource::kServer) {
    context.sluice_metrics->ObserveDecision(Since(*context.clock, asked));
  }
  ex.decision = std::move(answer->decision);
  ex.table = answer->table;
  const v1::Decision& decision = *ex.decision;

  switch (decision.action()) {
    case v1::DIRECT_RESPONSE:
      ex.flags = decision.response_flags().empty() ? "-" : decision.response_flags();
      co_await LocalReply(ex, decision.status(), decision.body());
      co_return;
    case v1::REDIRECT:
      co_await LocalReply(ex, decision.status(), "", false, decision.location());
      co_return;
    case v1::FORWARD:
    default:
      break;
  }
  const TableView& view = worker_.View(answer->table);
  const v1::RouteTable& table = *ex.table;  // kept alive by the exchange
  if (decision.cluster_id() >= static_cast<uint32_t>(table.clusters_size()) ||
      decision.route_id() >= static_cast<uint32_t>(table.routes_size())) {
    LogError("decision refers to a cluster or route missing from its route table");
    ReportNotSent(ex, "-");
    co_await LocalReply(ex, 503, "no route table for this decision");
    co_return;
  }
  // Taken now: the worker's view moves on to newer tables while this request waits.
  std::shared_ptr<ClusterLimits> limits = view.limits[decision.cluster_id()];
  const v1::RouteInfo& route = table.routes(decision.route_id());
  ex.destination_host = decision.host();
  ex.subset = decision.subset();

  // Faults: the delay first, then the abort, as Envoy's fault filter runs them.
  std::string fault_flags;
  if (decision.fault().delay_ms() > 0) {
    context.sluice_metrics->CountFault(decision.host(), "delay");
    fault_flags = "DI";
    event::Alarm delay(worker_.dispatcher().timers());
    (void)co_await delay.WaitFor(std::chrono::milliseconds(decision.fault().delay_ms()));
  }
  if (decision.fault().abort_http_status() > 0) {
    context.sluice_metrics->CountFault(decision.host(), "abort");
    ex.flags = JoinFlags(fault_flags, "FI");
    ReportNotSent(ex, "FI");
    co_await LocalReply(ex, decision.fault().abort_http_status(), kFaultAbortBody);
    co_return;
  }

  // The request's upstream form: rewrites, Istio's header operations, forwarding headers.
  if (!decision.path().empty()) {
    forward.original_path = ex.path;
    upstream.target = decision.path();
  }
  forward.authority = decision.authority();
  ApplyHeaderMutation(upstream.headers, decision.request_headers());
  ApplyHeaderMutation(upstream.headers, route.request_headers());
  SetForwardingHeaders(upstream.headers, forward);
  ex.route_response_headers = &route.response_headers();

  // A cluster's pool, limits and endpoints, for the request or its mirror, written over `t`
  // (the session's own target keeps its buffers from request to request).
  auto fill_target = [&](uint32_t cluster_id, std::shared_ptr<ClusterLimits> cluster_limits,
                         Target& t) {
    const v1::ClusterInfo& c = table.clusters(cluster_id);
    t.cluster.assign(c.name());
    t.pool.assign(view.pools[cluster_id]);
    t.cluster_id = c.id();
    t.endpoints.resize(static_cast<size_t>(c.endpoints_size()));
    for (int i = 0; i < c.endpoints_size(); ++i) {
      t.endpoints[static_cast<size_t>(i)].first.assign(c.endpoints(i).address());
      t.endpoints[static_cast<size_t>(i)].second = c.endpoints(i).port();
    }
    t.limits = std::move(cluster_limits);
    t.connect_timeout = c.pool().connect_timeout_ms() > 0
                            ? absl::Milliseconds(c.pool().connect_timeout_ms())
                            : Target::kDefaultConnectTimeout;
    t.idle_timeout = absl::Milliseconds(c.pool().idle_timeout_ms());
    t.max_requests_per_connection = c.pool().max_requests_per_connection();
  };
  if (decision.has_mirror() && !ex.streaming &&
      decision.mirror().cluster_id() < static_cast<uint32_t>(table.clusters_size())) {
    const uint32_t mirror_id = decision.mirror().cluster_id();
    if (decision.mirror().endpoint_index() <
        static_cast<uint32_t>(table.clusters(mirror_id).endpoints_size())) {
      // Envoy bounds a shadow request by its route's timeout; sluice also when it has none.
      const absl::Duration timeout =
          route.timeout_ms() > 0 ? absl::Milliseconds(route.timeout_ms()) : kMirrorTimeout;
      Target mirror;  // the mirror's task takes it
      fill_target(mirror_id, view.limits[mirror_id], mirror);
      Mirror(ex, std::move(mirror), decision.mirror().endpoint_index(), timeout);
    }
  }

  Target& target = *target_;
  fill_target(decision.cluster_id(), std::move(limits), target);
  target.plan.retry = ToRetryPolicy(route.retry());
  target.plan.route_timeout = absl::Milliseconds(route.timeout_ms());
  target.plan.primary = decision.endpoint_index();
  target.plan.alternates.assign(decision.alternate_indexes().begin(),
                                decision.alternate_indexes().end());
  // Released at the end, not at the next request: a cluster's limits go with its last user.
  absl::Cleanup release_limits = [&target] { target.limits.reset(); };
  co_await Forward(ex, target);
  if (!fault_flags.empty()) ex.flags = JoinFlags(fault_flags, ex.flags);
}

event::Task<void> Session::Forward(Exchange& ex, Target& target) {
  if (target.endpoints.empty()) {
    ex.flags = "UH";
    co_await LocalReply(ex, 503, kNoHealthyUpstreamBody);
    co_return;
  }
  // A body that outgrew the retry buffer cannot be replayed: one attempt only.
  if (ex.streaming) target.plan.retry.num_retries = 0;

  event::Dispatcher& dispatcher = worker_.dispatcher();
  // Envoy arms the route timeout when it has the whole request: a buffered body is whole
  // already; a streamed one is whole when its upload ends, inside the (only) attempt.
  Router router(dispatcher.timers(), dispatcher.time_source(), target.plan, *target.limits,
                worker_.rng(), /*request_complete=*/!ex.streaming);
  Attempts attempts(*this, ex, target, router);
  // Envoy resets the upstream request when its client disconnects: the client's socket is
  // watched from when the whole request is in until the response has been relayed.
  struct StopWatchOnExit {
    Session& session;
    ~StopWatchOnExit() { session.StopWatchingClient(); }
  } stop_watch{*this};
  client_gone_ = false;
  if (!ex.streaming) WatchClient(&router);
  const Router::Outcome outcome = co_await router.Run(attempts);
  AttemptOutcome& last = attempts.last();

  switch (outcome.kind) {
    case Router::Outcome::Kind::kRequestOver:
      // The upload broke off, stalled, or waited too long for a connection; the attempt
      // reported it.
      ex.close = true;
      if (last.stream_idle_timed_out || last.client_read == ClientRead::kTimeout) {
        // Envoy's stream idle timeout (408, flag SI).
        ex.flags = "SI";
        co_await LocalReply(ex, 408, "stream timeout");
      } else if (last.client_read == ClientRead::kInvalid) {
        ex.flags = "DPE";
        co_await LocalReply(ex, decoder_.error().status, RefusalBody(decoder_.error().status));
      } else {
        ex.flags = "DC";  // the client went away mid-body: nobody to answer
      }
      co_return;
    case Router::Outcome::Kind::kClientGone:
      // Nobody to answer: logged as Envoy logs a downstream disconnect (response code 0).
      attempts.DiscardLast();
      ex.close = true;
      ex.flags = "DC";
      co_return;
    case Router::Outcome::Kind::kLocalReply:
      attempts.DiscardLast();
      ex.flags = outcome.flags;
      co_await LocalReply(ex, outcome.status, outcome.body, outcome.overloaded);
      co_return;
    case Router::Outcome::Kind::kPassResponse:
      break;
  }
  ex.flags = outcome.flags;
  ex.upstream_service_time = std::to_string(
      absl::ToInt64Milliseconds(absl::FromChrono(last.headers_at - outcome.first_sent)));
  // The route timer still runs while the body streams: it ends the response mid-way.
  const RelayEnd end = co_await Relay(last, ex, target, attempts.control());
  router.Finish();
  if (end != RelayEnd::kComplete) {
    ex.close = true;
    // The client has part of a response: it must not take it for the whole. Envoy resets
    // the downstream stream; on HTTP/1.1 that is an abortive close.
    reset_on_close_ = true;
    const char* cause = client_gone_                    ? "DC"
                        : router.route_timed_out()      ? "UT"
                        : end == RelayEnd::kUpstreamCut ? "UC"  // Envoy's flag for it
                                                        : "DC";
    if (!absl::StrContains(ex.flags, cause)) ex.flags = JoinFlags(ex.flags, cause);
  }
}

event::Task<Router::Upstream::AttemptEnd> Session::Attempts::Attempt(uint32_t endpoint,
                                                                     uint32_t attempt,
                                                                     absl::Duration per_try) {
  Worker& worker = session_.worker_;
  GatewayContext& context = worker.context();
  // A response of the attempt before, not passed on: Envoy resets the upstream stream, which
  // for HTTP/1.1 means the connection goes.
  DiscardLast();
  last_ = AttemptOutcome();
  control_.fired = false;
  per_try_fired_ = false;
  AttemptEnd end;
  AttemptOutcome& out = last_;
  const event::MonotonicTime started = context.clock->Now();
  const auto& [address, port] = target_.endpoints[endpoint % target_.endpoints.size()];
  ex_.upstream_host = absl::StrCat(address, ":", port);

  if (!co_await AcquireConnection(worker, target_, endpoint, ex_.streaming, control_, out)) {
    DiscardLast();
    if (out.stream_idle_timed_out) {
      Report(endpoint, attempt, v1::NOT_SENT, 0, Since(*context.clock, started), "SI", true);
      end.request_over = true;
    }
    end.result = out.result;
    co_return end;
  }
  UpstreamConnection& conn = *out.connection;
  control_.connection = &conn;
  struct ClearOnExit {
    AttemptControl& control;
    event::Timer& per_try;
    ~ClearOnExit() {
      control.connection = nullptr;
      per_try.Cancel();
    }
  } clear{control_, per_try_timer_};

  // The request: the buffered body in one go, or the buffered part then the rest streamed.
  http::RequestHead& upstream = *ex_.upstream;
  upstream.headers.Set("x-envoy-attempt-count", absl::StrCat(attempt));
  const bool chunked_upload = ex_.streaming && ex_.chunked;
  if (ex_.streaming) {
    upstream.framing =
        ex_.chunked ? http::BodyFraming::kChunked : http::BodyFraming::kContentLength;
    upstream.content_length = ex_.content_length_value;
  } else if (ex_.had_length || !ex_.body.empty()) {
    upstream.framing = http::BodyFraming::kContentLength;
    upstream.content_length = ex_.body.size();
  } else {
    upstream.framing = http::BodyFraming::kNone;
  }
  std::string& wire = conn.out;
  wire.clear();
  http::EncodeRequestHead(upstream, &wire);
  // Envoy's per-try timer starts once the whole request is in the router and the connection
  // is ready: now for a buffered body, after the upload for a streamed one.
  auto arm_per_try = [this, per_try] {
    if (per_try <= absl::ZeroDuration()) return;
    per_try_timer_.ArmAfter(per_try, event::TimerCallback::Bind<&Attempts::OnPerTryTimeout>(this));
  };
  bool wrote = true;
  size_t written = 0;
  if (!ex_.streaming) {
    arm_per_try();
    // Head and body in one gathering write; the body stays where it is, for a retry.
    const IoResult r = co_await conn.socket->Write(wire, ex_.body);
    wrote = r.data();
    if (wrote) written = r.bytes;
  } else {
    // No request timer runs while a streamed body uploads; like Envoy's stream idle timeout,
    // the idle timeout bounds each write to an upstream that stops reading.
    const absl::Duration upload_write_timeout = context.options.idle_timeout;
    AppendBody(ex_.body, chunked_upload, &wire);
    for (;;) {
      if (session_.request_.complete()) {
        ex_.body_pending = false;
        if (chunked_upload) AppendLastChunk(session_.request_.trailers(), &wire);
      }
      if (!wire.empty()) {
        upload_timer_.ArmAfter(upload_write_timeout, TimeOut(conn.socket.get()));
        const IoResult r = co_await conn.socket->Write(wire);
        upload_timer_.Cancel();
        wire.clear();
        wrote = r.data() && !conn.aborted;
        if (wrote) written += r.bytes;
      }
      if (!wrote || session_.request_.complete()) break;
      const ClientRead read = co_await session_.ReadClient(context.options.idle_timeout);
      if (read != ClientRead::kOk) {
        ex_.close = true;
        out.client_read = read;
        Report(endpoint, attempt, v1::NOT_SENT, 0, Since(*context.clock, started),
               read == ClientRead::kTimeout ? "SI" : "DC", true);
        DiscardLast();
        end.request_over = true;
        co_return end;
      }
      ex_.bytes_received += session_.request_.body().size();
      AppendBody(session_.request_.body(), chunked_upload, &wire);
      session_.request_.body().clear();
    }
    if (wrote) {
      arm_per_try();
      router_.RequestComplete();
      session_.WatchClient(&router_);
    }
  }
  // The response's head; 1xx interim responses are read and dropped by the decoder.
  conn.response.Reset();
  conn.decoder.ExpectResponse(ex_.head);
  bool upstream_ok = wrote && !conn.aborted && DecodeFrom(conn.decoder, conn.in).ok();
  while (upstream_ok && conn.response.head() == nullptr) {
    upstream_ok = co_await ReadUpstream(conn);
  }
  per_try_timer_.Cancel();  // the per-try timeout ends with the response headers
  if (control_.fired) {
    out.interrupted = true;
    DiscardLast();
    co_return end;
  }
  if (!upstream_ok) {
    out.result.kind =
        per_try_fired_ ? AttemptResult::Kind::kPerTryTimeout : AttemptResult::Kind::kReset;
    out.result.request_sent = written > 0;
    end.result = out.result;
    DiscardLast();
    co_return end;
  }
  out.headers_at = context.clock->Now();
  const http::ResponseHead& response = *conn.response.head();
  out.result.kind = AttemptResult::Kind::kResponse;
  out.result.status = static_cast<unsigned>(response.status);
  out.result.rate_limited = response.headers.Get("x-envoy-ratelimited").has_value();
  int grpc_status = -1;
  if (std::optional<absl::string_view> value = response.headers.Get("grpc-status");
      value.has_value() && absl::SimpleAtoi(*value, &grpc_status)) {
    out.result.grpc_status = grpc_status;
  }
  end.result = out.result;
  co_return end;
}

event::Task<bool> Session::AcquireConnection(Worker& worker, Target& target, uint32_t endpoint,
                                             bool streaming, AttemptControl& control,
                                             AttemptOutcome& out) {
  UpstreamPool& pool = worker.pool();
  event::TimeSource& clock = *worker.context().clock;
  const auto& [address, port] = target.endpoints[endpoint % target.endpoints.size()];
  const std::string key = absl::StrCat(address, ":", port);

  // Envoy's HTTP/1.1 pool admission (ClusterLimits::Admit): an idle connection of the
  // cluster's pool to the endpoint; else the request is pending, or overflows when the
  // cluster's queue is full, before any connection opens; a pending request opens one, or
  // waits for one of the pool's to free. It stays pending while its new connection connects.
  ClusterLimits::Ticket pending;
  const event::MonotonicTime queued_at = clock.Now();
  for (;;) {
    if (control.fired) {
      out.interrupted = true;
      co_return false;
    }
    if (auto idle = pool.TakeIdle(target.pool, key, target.idle_timeout, clock.Now())) {
      out.connection = std::move(idle);
      break;
    }
    ClusterLimits::Ticket slot;
    const ClusterLimits::Admission admission = target.limits->Admit(
        /*idle_available=*/false, pool.OpenCount(target.pool, key) > 0, &slot, &pending);
    if (admission == ClusterLimits::Admission::kOverflow) {
      out.result.kind = AttemptResult::Kind::kOverflow;
      out.result.request_sent = false;
      co_return false;
    }
    if (admission == ClusterLimits::Admission::kOpenNew) {
      out.connection = std::make_unique<UpstreamConnection>();
      out.connection->cluster = target.cluster;
      out.connection->pool = target.pool;
      out.connection->endpoint = key;
      out.connection->ticket = std::move(slot);
      pool.NoteOpened(*out.connection);
      break;
    }
    // Queued. Another endpoint's idle connection may be what holds the slot we need.
    if (pool.CloseOneIdle(target.cluster)) continue;
    // Woken when one of this worker's connections of the cluster frees, or by the route
    // timer or the client leaving (AttemptControl); a streamed upload's wait is bounded by
    // the idle timeout (Envoy's stream idle timeout).
    const absl::Duration waited = Since(clock, queued_at);
    const absl::Duration max_wait =
        streaming ? worker.context().options.idle_timeout - waited : absl::InfiniteDuration();
    if (streaming && max_wait <= absl::ZeroDuration()) {
      out.stream_idle_timed_out = true;
      co_return false;
    }
    event::Alarm alarm(worker.dispatcher().timers());
    co_await pool.WaitForRelease(target.cluster, max_wait, alarm, &control.wait);
  }
  UpstreamConnection& conn = *out.connection;
  conn.idle_timeout = target.idle_timeout;
  control.connection = &conn;
  struct ClearOnExit {
    AttemptControl& control;
    ~ClearOnExit() { control.connection = nullptr; }
  } clear{control};

  if (conn.socket == nullptr) {
    // Envoy's connect timeout covers the wait for a first resolution and the connect.
    const event::MonotonicTime connect_started = clock.Now();
    absl::StatusOr<std::string> ip =
        co_await ResolveEndpoint(worker, address, target.connect_timeout, control);
    if (control.fired) {
      out.interrupted = true;
      co_return false;
    }
    if (!ip.ok()) {
      out.result.kind = AttemptResult::Kind::kConnectFailure;
      out.result.dns_failure = true;
      out.result.request_sent = false;
      co_return false;
    }
    absl::Status connected;
    absl::StatusOr<event::ConnectingSocket> started =
        event::ConnectTcp(*ip, static_cast<uint16_t>(port));
    if (started.ok()) {
      const bool in_progress = started->in_progress;
      absl::StatusOr<std::unique_ptr<event::AsyncSocket>> socket =
          event::AsyncSocket::Create(worker.dispatcher(), std::move(started->fd), in_progress);
      if (socket.ok()) {
        conn.socket = std::move(*socket);
        if (in_progress) {
          const absl::Duration connect_left = std::max(
              target.connect_timeout - Since(clock, connect_started), absl::Milliseconds(1));
          event::Timer connect_timer(worker.dispatcher().timers());
          connect_timer.ArmAfter(connect_left, TimeOut(conn.socket.get()));
          connected = co_await conn.socket->Connect();
        }
      } else {
        connected = socket.status();
      }
    } else {
      connected = started.status();
    }
    if (control.fired) {
      out.interrupted = true;
      co_return false;
    }
    if (!connected.ok()) {
      out.result.kind = AttemptResult::Kind::kConnectFailure;
      out.result.request_sent = false;
      co_return false;
    }
  }
  pending.Release();  // attached to its connection
  ++conn.requests;
  co_return true;
}

void Session::WatchClient(Router* router) {
  watching_ = router;
  // Bytes of a pipelined request are no departure; a hang-up seen before the watch counts.
  if (socket_->hung_up()) {
    OnClientHangup();
  } else {
    socket_->WatchHangup(event::TimerCallback::Bind<&Session::OnClientHangup>(this));
  }
}

void Session::StopWatchingClient() {
  watching_ = nullptr;
  socket_->WatchHangup({});
  client_gone_timer_.Cancel();
}

void Session::OnClientHangup() {
  if (watching_ == nullptr) return;
  char byte;
  const ssize_t n = ::recv(socket_->fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return;  // the next pipelined request: its close shows once it is read
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    socket_->WatchHangup(event::TimerCallback::Bind<&Session::OnClientHangup>(this));
    return;
  }
  // End of stream or an error: Envoy's HTTP connection manager does not half-close, so a
  // client's FIN ends its requests as a reset does. The router hears it at the next turn of
  // the loop, outside the socket's event handling.
  client_gone_timer_.ArmAfter(event::MonotonicDuration::zero(),
                              event::TimerCallback::Bind<&Session::OnClientGone>(this));
}

void Session::OnClientGone() {
  if (watching_ == nullptr) return;
  client_gone_ = true;
  watching_->ClientGone();  // last: the session may end inside
}

event::Task<Session::RelayEnd> Session::Relay(AttemptOutcome& outcome, Exchange& ex, Target& target,
                                              AttemptControl& control) {
  UpstreamConnection& conn = *outcome.connection;
  control.connection = &conn;  // the route timer, or the client leaving, aborts it
  http::ResponseHead& response = *conn.response.head();
  ex.response_code = static_cast<unsigned>(response.status);
  StripHopByHop(response.headers);
  response.headers.Remove("content-length");  // written from the framing below
  if (ex.decision.has_value()) {
    ApplyHeaderMutation(response.headers, ex.decision->response_headers());
  }
  if (ex.route_response_headers != nullptr) {
    ApplyHeaderMutation(response.headers, *ex.route_response_headers);
  }
  response.headers.Set("x-envoy-upstream-service-time", ex.upstream_service_time);
  const int status = response.status;
  const bool bodyless =
      ex.head || status == 204 || status == 304 || (status >= 100 && status < 200);
  http::BodyFraming framing = response.framing;
  if (framing == http::BodyFraming::kUntilClose ||
      (framing == http::BodyFraming::kChunked && !bodyless)) {
    // Re-framed for the client: chunked, or, as HTTP/1.0 has no chunked coding, the end of
    // the body is the end of the connection.
    if (bodyless) {
      framing = http::BodyFraming::kNone;
    } else if (ex.version >= 11) {
      framing = http::BodyFraming::kChunked;
    } else {
      framing = http::BodyFraming::kUntilClose;
      ex.close = true;
    }
  }
  if (ex.body_pending || worker_.context().draining.load()) ex.close = true;
  if (ex.version == 10 && !ex.close) response.headers.Set("Connection", "keep-alive");
  const bool chunked = framing == http::BodyFraming::kChunked && !bodyless;

  out_.clear();
  http::EncodeResponseHead(status, response.reason, response.headers, framing,
                           response.content_length, !ex.close, &out_);
  // The head goes out with the first piece of body, in one write (one syscall less per
  // request than writing the head alone first).
  bool upstream_ok = true;
  bool client_ok = true;
  for (;;) {
    std::string& body = conn.response.body();
    ex.bytes_sent += body.size();
    AppendBody(body, chunked, &out_);
    body.clear();
    const bool complete = conn.response.complete();
    if (complete && chunked) AppendLastChunk(conn.response.trailers(), &out_);
    if (!out_.empty()) {
      client_ok = co_await WriteClient(out_);
      out_.clear();
      if (!client_ok) break;
    }
    if (complete) break;
    if (!co_await ReadUpstream(conn)) {
      upstream_ok = false;  // reset mid-body: the client's response cannot be finished
      break;
    }
  }
  control.connection = nullptr;
  // Bytes past the response's end mean the upstream's framing cannot be trusted: such a
  // connection must not carry another client's request. A stopped one is not reused either.
  if (upstream_ok && client_ok && !control.fired && !conn.aborted &&
      conn.decoder.connection_reusable() && conn.in.empty()) {
    worker_.pool().Release(std::move(outcome.connection), target.max_requests_per_connection,
                           worker_.context().clock->Now());
  } else {
    worker_.pool().Discard(std::move(outcome.connection));
  }
  co_return !client_ok ? RelayEnd::kClientGone
  : !upstream_ok       ? RelayEnd::kUpstreamCut
                       : RelayEnd::kComplete;
}

event::Task<void> Session::LocalReply(Exchange& ex, unsigned status, std::string body,
                                      bool overloaded, std::string location) {
  // 1xx, 204 and 304 carry no body.
  if (status < 200 || status == 204 || status == 304) body.clear();
  http::HeaderMap headers;
  if (!body.empty()) headers.Add("content-type", "text/plain");
  if (overloaded) headers.Add("x-envoy-overloaded", "true");
  if (!location.empty()) headers.Add("location", location);
  // Unread request body bytes, or a drain: this is the connection's last response.
  if (ex.body_pending || worker_.context().draining.load()) ex.close = true;
  if (ex.version == 10 && !ex.close) headers.Add("connection", "keep-alive");
  out_.clear();
  http::EncodeResponseHead(
      static_cast<int>(status), "", headers,
      body.empty() ? http::BodyFraming::kNone : http::BodyFraming::kContentLength, body.size(),
      !ex.close, &out_);
  // HEAD: the length of what GET would get, no body.
  if (!ex.head) out_.append(body);
  ex.bytes_sent = ex.head ? 0 : body.size();
  ex.response_code = status;
  if (!co_await WriteClient(out_)) ex.close = true;
}

void Session::Mirror(const Exchange& ex, Target target, uint32_t endpoint, absl::Duration timeout) {
  http::RequestHead copy = *ex.upstream;
  copy.framing = ex.had_length || !ex.body.empty() ? http::BodyFraming::kContentLength
                                                   : http::BodyFraming::kNone;
  copy.content_length = ex.body.size();
  // The Host as forwarded, as current Istio sends it (1.28 sets Envoy's
  // disable_shadow_host_suffix_append); "-shadow" appended with --shadow-host-suffix.
  if (worker_.context().options.shadow_host_suffix) {
    copy.headers.Set("host", ShadowAuthority(HeaderValue(copy.headers, "host")));
  }
  copy.headers.Set("x-envoy-attempt-count", "1");
  std::string request;
  http::EncodeRequestHead(copy, &request);
  request.append(ex.body);
  worker_.tasks().Start(
      RunMirror(worker_, std::move(target), endpoint, timeout, ex.head, std::move(request)));
}

event::Task<void> Session::RunMirror(Worker& worker, Target target, uint32_t endpoint,
                                     absl::Duration timeout, bool head, std::string request) {
  // The mirror's own timer: it ends a wait in the pool's queue, the connect or the exchange.
  AttemptControl control(worker.dispatcher().timers());
  event::Timer timer(worker.dispatcher().timers());
  timer.ArmAfter(timeout, event::TimerCallback::Bind<&AttemptControl::Fire>(&control));
  AttemptOutcome out;
  if (!co_await AcquireConnection(worker, target, endpoint, /*streaming=*/false, control, out)) {
    // Overflow drops the copy, as Envoy's circuit breakers drop a shadow request.
    if (out.connection) worker.pool().Discard(std::move(out.connection));
    co_return;
  }
  UpstreamConnection& conn = *out.connection;
  control.connection = &conn;
  const IoResult wrote = co_await conn.socket->Write(request);
  // The response is read to its end and dropped, so that the connection can be reused.
  conn.response.Reset();
  conn.decoder.ExpectResponse(head);
  bool ok = wrote.data() && !conn.aborted && DecodeFrom(conn.decoder, conn.in).ok();
  while (ok && !conn.response.complete()) {
    conn.response.body().clear();
    ok = co_await ReadUpstream(conn);
  }
  conn.response.body().clear();
  control.connection = nullptr;
  timer.Cancel();
  // Kept for the next request of its pool only after a complete exchange that allows it.
  if (ok && !control.fired && !conn.aborted && conn.decoder.connection_reusable() &&
      conn.in.empty()) {
    worker.pool().Release(std::move(out.connection), target.max_requests_per_connection,
                          worker.context().clock->Now());
  } else {
    worker.pool().Discard(std::move(out.connection));
  }
}

void Session::Report(const Exchange& ex, uint32_t cluster_id, uint32_t endpoint, uint32_t attempt,
                     v1::Outcome outcome, uint32_t status, absl::Duration latency,
                     const std::string& flags, bool final) {
  if (!ex.decision.has_value()) return;  // the fallback has no decision to report on
  // One per worker thread, cleared for each report: its string keeps its buffer.
  static thread_local v1::AttemptReport r;
  r.Clear();
  r.set_id(ex.decision->id());
  r.set_config_version(ex.decision->config_version());
  r.set_cluster_id(cluster_id);
  r.set_endpoint_index(endpoint);
  r.set_attempt(attempt);
  r.set_outcome(outcome);
  r.set_status_code(status);
  r.set_latency_us(static_cast<uint32_t>(std::max<int64_t>(0, absl::ToInt64Microseconds(latency))));
  r.set_response_flags(flags);
  r.set_final(final);
  worker_.decisions().Report(r);
}

void Session::ReportNotSent(const Exchange& ex, const char* flags) {
  if (!ex.decision.has_value()) return;
  Report(ex, ex.decision->cluster_id(), ex.decision->endpoint_index(), 0, v1::NOT_SENT, 0,
         absl::ZeroDuration(), flags, true);
}

void Session::Finish(Exchange& ex) {
  GatewayContext& context = worker_.context();
  const absl::Duration duration = Since(*worker_.context().clock, ex.started);
  if (context.access_log != nullptr) {
    AccessLogEntry entry;
    entry.start_time = ex.start;
    entry.method = ex.method;
    entry.path = ex.path;
    entry.protocol = ex.version == 10 ? "HTTP/1.0" : "HTTP/1.1";  // as the client sent it
    entry.response_code = ex.response_code;
    entry.response_flags = ex.flags;
    entry.bytes_received = ex.bytes_received;
    entry.bytes_sent = ex.bytes_sent;
    entry.duration = duration;
    entry.upstream_service_time = ex.upstream_service_time;
    entry.forwarded_for = ex.forwarded_for;
    entry.user_agent = ex.user_agent;
    entry.request_id = ex.request_id;
    entry.authority = ex.authority;
    entry.upstream_host = ex.upstream_host;
    // Formatted into this thread's scratch line (its buffer kept), then copied to the worker's
    // buffer: no allocation once both have grown.
    thread_local std::string line;
    line.clear();
    AppendAccessLog(entry, line);
    context.access_log->ForWorker(worker_.index()).Append(line);
  }
  RequestOutcome outcome;
  outcome.destination_host = ex.destination_host.empty() ? absl::string_view("unknown")
                                                         : absl::string_view(ex.destination_host);
  outcome.subset = ex.subset;
  outcome.response_code = ex.response_code;
  outcome.response_flags = ex.flags;
  context.istio_metrics->Record(outcome, duration, ex.bytes_received, ex.bytes_sent);
}

}  // namespace sluice::gateway
