#include "gateway/worker/session.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gateway/http/headers.h"
#include "gateway/observability/access_log.h"
#include "gateway/proxy/request_flow.h"
#include "gateway/proxy/router.h"
#include "gateway/upstream/dns_cache.h"
#include "gateway/worker/worker.h"
#include "lib/common/log.h"
#include "lib/common/utf8.h"

namespace sluice::gateway {

namespace asio = net::asio;
namespace beast = net::beast;

using boost::system::error_code;
using net::tcp;

namespace {

// A mirrored request on a route without a timeout ends after this (Envoy would wait forever).
constexpr absl::Duration kMirrorTimeout = absl::Seconds(30);

auto Await(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

// Time since `start` on the monotonic clock: an NTP step cannot make it negative or huge.
absl::Duration Since(event::TimeSource& clock, event::MonotonicTime start) {
  return absl::FromChrono(clock.Now() - start);
}

// Asks the worker's decision stream; resumes the coroutine on the worker's loop. The answer
// is posted rather than delivered inline because the client may be walking its pending
// table when it answers.
template <typename Token>
auto AsyncDecide(asio::io_context& io, DecisionClient& client, v1::DecideRequest request,
                 Token&& token) {
  using Signature = void(absl::StatusOr<DecisionClient::Answer>);
  return asio::async_initiate<Token, Signature>(
      [&io, &client](auto handler, v1::DecideRequest request) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        client.Decide(std::move(request),
                      [&io, shared](absl::StatusOr<DecisionClient::Answer> answer) {
                        asio::post(io, [shared, answer = std::move(answer)]() mutable {
                          (*shared)(std::move(answer));
                        });
                      });
      },
      token, std::move(request));
}

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
// connection failed or the response cannot be decoded; an end of stream that completes a
// body delimited by the close is not a failure.
asio::awaitable<bool> ReadUpstream(UpstreamConnection& conn) {
  error_code ec;
  const size_t n = co_await conn.stream.async_read_some(
      asio::buffer(conn.read_chunk.data(), conn.read_chunk.size()), Await(ec));
  if (ec == asio::error::eof) co_return conn.decoder.DecodeEof().ok();
  if (ec) co_return false;
  co_return DecodeRead(conn.decoder, conn.in, {conn.read_chunk.data(), n}).ok();
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

// An endpoint's address: a numeric one as it is, a host name from the workers' DNS cache. A
// name without a result yet waits for its first resolution at most `timeout`; meanwhile
// `*waiting` points at the wait's timer, so that the route timer (Interrupt) can end it.
asio::awaitable<absl::StatusOr<asio::ip::address>> ResolveEndpoint(DnsCache& dns,
                                                                   asio::io_context& io,
                                                                   const std::string& host,
                                                                   absl::Duration timeout,
                                                                   asio::steady_timer** waiting) {
  error_code ec;
  const asio::ip::address numeric = asio::ip::make_address(host, ec);
  if (!ec) co_return numeric;
  std::optional<DnsCache::Result> known = dns.Lookup(host);
  if (!known.has_value()) {
    auto wait = std::make_shared<asio::steady_timer>(io);
    wait->expires_after(absl::ToChronoMicroseconds(timeout));
    // Called on the resolver thread: only a post to this worker's loop, and only a weak
    // reference to a wait that may have ended by then.
    dns.WhenResolved(host, [ex = io.get_executor(), weak = std::weak_ptr(wait)] {
      asio::post(ex, [weak] {
        if (auto w = weak.lock()) w->cancel();
      });
    });
    if (waiting != nullptr) *waiting = wait.get();
    co_await wait->async_wait(Await(ec));
    if (waiting != nullptr) *waiting = nullptr;
    known = dns.Lookup(host);
    if (!known.has_value()) {
      co_return absl::DeadlineExceededError(absl::StrCat(
          "DNS resolution of ", host, " took longer than ", absl::FormatDuration(timeout)));
    }
  }
  if (!known->status.ok()) co_return known->status;
  const asio::ip::address ip = asio::ip::make_address(known->addresses.front(), ec);
  if (ec) co_return absl::InternalError(absl::StrCat("resolver gave ", known->addresses.front()));
  co_return ip;
}

asio::awaitable<error_code> Connect(beast::tcp_stream& stream, const asio::ip::address& ip,
                                    uint32_t port, absl::Duration timeout) {
  error_code ec;
  stream.expires_after(absl::ToChronoMilliseconds(timeout));
  co_await stream.async_connect(tcp::endpoint(ip, static_cast<uint16_t>(port)), Await(ec));
  if (!ec) stream.socket().set_option(tcp::no_delay(true), ec);
  stream.expires_never();
  co_return ec;
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
  std::string content_length;   // ... or with this Content-Length
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
};

// Where a forwarded request goes and under which limits.
struct Session::Target {
  std::string cluster;
  std::string pool;  // the cluster's connection pool (PoolKey)
  uint32_t cluster_id = 0;
  std::vector<std::pair<std::string, uint32_t>> endpoints;  // address, port
  std::shared_ptr<ClusterLimits> limits;  // held: the registry keeps it while in use
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration idle_timeout = absl::ZeroDuration();
  uint32_t max_requests_per_connection = 0;
  RequestFlow::Plan plan;
};

struct Session::AttemptOutcome {
  AttemptResult result;
  // The route timer fired, or the client went away (Interrupt::client_gone says which).
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

// Lets the route timer, or the client going away, stop whatever the request is waiting on:
// the current attempt's connection or the back-off timer. The first cause wins.
struct Session::Interrupt {
  bool fired = false;
  bool client_gone = false;  // fired because the client closed or reset its connection
  bool done = false;
  UpstreamConnection* connection = nullptr;
  asio::steady_timer* backoff = nullptr;
  asio::steady_timer* dns_wait = nullptr;      // a first resolution of the endpoint's host name
  asio::steady_timer* pending_wait = nullptr;  // queued for a connection (UpstreamPool)
  // For a streamed request body: what starts the route timer (and the watch on the client)
  // once the upload has ended.
  std::function<void()> on_request_complete;
  void Fire(bool by_client = false) {
    if (done || fired) return;
    fired = true;
    client_gone = by_client;
    error_code ec;
    if (connection != nullptr) connection->stream.socket().close(ec);
    if (backoff != nullptr) backoff->cancel();
    if (dns_wait != nullptr) dns_wait->cancel();
    if (pending_wait != nullptr) pending_wait->cancel();
  }
};

namespace {
http::RequestDecoderLimits RequestLimits(const GatewayOptions& options) {
  http::RequestDecoderLimits limits;
  limits.max_header_bytes = options.max_request_headers_bytes;
  limits.max_header_count = options.max_request_header_count;
  limits.max_body_bytes = options.max_request_body_bytes;
  return limits;
}
}  // namespace

Session::Session(Worker& worker, tcp::socket socket)
    : worker_(worker),
      stream_(std::move(socket)),
      decoder_(request_, RequestLimits(worker.context().options)),
      read_timer_(worker.io()) {
  error_code ec;
  const tcp::endpoint remote = stream_.socket().remote_endpoint(ec);
  if (!ec) client_address_ = remote.address().to_string();
}

Session::~Session() = default;

void Session::CloseIfIdle() {
  if (idle_) stream_.cancel();
}

asio::awaitable<void> Session::Run() {
  worker_.Register(this);
  const GatewayOptions& options = worker_.context().options;
  for (;;) {
    if (in_.empty()) {
      if (worker_.context().draining.load() && served_ > 0) break;
      // Between requests the idle timeout applies; once a byte arrives, the header timeout.
      idle_ = true;
      stream_.expires_after(absl::ToChronoMilliseconds(options.idle_timeout));
      error_code ec;
      const size_t n = co_await stream_.async_read_some(
          asio::buffer(read_chunk_.data(), read_chunk_.size()), Await(ec));
      idle_ = false;
      if (ec) break;
      in_.append(read_chunk_.data(), n);
    }
    // Nothing on the request path throws by design; should a library call do it, the
    // connection ends here and the worker still learns that the session is gone.
    bool more = false;
    try {
      more = co_await HandleOne();
    } catch (const std::exception& e) {
      LogError(absl::StrCat("gateway session ended by an exception: ", e.what()));
    }
    if (!more) break;
    ++served_;
  }
  error_code ec;
  if (reset_on_close_) {
    // SO_LINGER 0: the close sends RST, so the client sees a reset rather than an end.
    stream_.socket().set_option(asio::socket_base::linger(true, 0), ec);
  } else {
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  }
  stream_.close();
  worker_.Unregister(this);
}

Session::ClientRead Session::DecodeBuffered() {
  return DecodeFrom(decoder_, in_).ok() ? ClientRead::kOk : ClientRead::kInvalid;
}

asio::awaitable<bool> Session::HandleOne() {
  const GatewayOptions& options = worker_.context().options;
  Exchange ex;
  ex.start = worker_.context().clock->WallNow();
  ex.started = worker_.context().clock->Now();
  stream_.expires_never();
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
  ex.user_agent = HeaderValue(request.headers, "user-agent");
  ex.had_length = request.framing != http::BodyFraming::kNone;
  ex.chunked = request.framing == http::BodyFraming::kChunked;
  ex.content_length_value = request.content_length;
  ex.head = request.method == "HEAD";
  ex.version = request.version_minor == 0 ? 10 : 11;
  if (!request.keep_alive) ex.close = true;

  if (request.expect_continue && !request_.complete()) {
    // Answered here (the body is read before routing), so the upstream never sees it.
    static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    error_code ec;
    co_await asio::async_write(stream_.socket(), asio::buffer(kContinue, sizeof(kContinue) - 1),
                               Await(ec));
    if (ec) co_return false;
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
  ex.request_id = HeaderValue(request.headers, "x-request-id");
  if (ex.request_id.empty()) ex.request_id = NewRequestId(worker_.rng());
  ex.forwarded_for = HeaderValue(request.headers, "x-forwarded-for");
  ex.forwarded_for = ex.forwarded_for.empty()
                         ? client_address_
                         : absl::StrCat(ex.forwarded_for, ", ", client_address_);
  if (worker_.context().draining.load()) ex.close = true;

  co_await Execute(ex);
  // A body we did not read to its end leaves the connection unusable.
  if (!request_.complete()) ex.close = true;
  Finish(ex);
  co_return !ex.close;
}

asio::awaitable<Session::ClientRead> Session::ReadClient(absl::Duration timeout) {
  // The timer cancels the read instead of closing the socket (as the stream's own expiry
  // would), so that the client still gets its 408.
  read_timer_.expires_after(absl::ToChronoMilliseconds(timeout));
  const uint64_t generation = ++read_generation_;
  read_timed_out_ = false;
  read_timer_.async_wait([weak = weak_from_this(), generation](error_code timer_ec) {
    auto self = weak.lock();
    // An expiry already queued when the read completed must not cancel a later read.
    if (timer_ec || self == nullptr || self->read_generation_ != generation) return;
    self->read_timed_out_ = true;
    error_code ignored;
    self->stream_.socket().cancel(ignored);
  });
  error_code ec;
  const size_t n = co_await stream_.socket().async_read_some(
      asio::buffer(read_chunk_.data(), read_chunk_.size()), Await(ec));
  ++read_generation_;
  read_timer_.cancel();
  if (ec) {
    if (read_timed_out_) co_return ClientRead::kTimeout;
    const bool mid_request = decoder_.message_in_progress();
    if (ec == asio::error::eof && !decoder_.DecodeEof().ok()) co_return ClientRead::kCut;
    co_return mid_request ? ClientRead::kCut : ClientRead::kClosed;
  }
  co_return DecodeRead(decoder_, in_, {read_chunk_.data(), n}).ok() ? ClientRead::kOk
                                                                    : ClientRead::kInvalid;
}

v1::DecideRequest Session::DescribeRequest(const http::HeaderMap& request, const Exchange& ex) {
  v1::DecideRequest ask;
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
  return ask;
}

asio::awaitable<void> Session::Execute(Exchange& ex) {
  GatewayContext& context = worker_.context();
  http::RequestHead& upstream = *ex.upstream;

  const event::MonotonicTime asked = context.clock->Now();
  absl::StatusOr<DecisionClient::Answer> answer;
  // The server answers RESEND when the table our header names came from is older than the
  // rules it decides with; each answer brings the newer table, so a retry or two settles it.
  for (int asks = 0;; ++asks) {
    v1::DecideRequest ask = DescribeRequest(upstream.headers, ex);
    if (!DescribableAsUtf8(ask)) {
      // The decision API carries text as UTF-8 (proto3 strings): bytes that are not would make
      // the server drop the whole stream. RFC 3986 wants such bytes percent-encoded anyway.
      ex.flags = "DPE";
      co_await LocalReply(ex, 400, "request path or a routing header is not valid UTF-8");
      co_return;
    }
    answer = co_await AsyncDecide(worker_.io(), worker_.decisions(), std::move(ask),
                                  asio::use_awaitable);
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
    asio::steady_timer delay(worker_.io());
    delay.expires_after(std::chrono::milliseconds(decision.fault().delay_ms()));
    error_code ec;
    co_await delay.async_wait(Await(ec));
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

  // A cluster's pool, limits and endpoints, for the request or its mirror.
  auto target_of = [&](uint32_t cluster_id, std::shared_ptr<ClusterLimits> cluster_limits) {
    const v1::ClusterInfo& c = table.clusters(cluster_id);
    Target t;
    t.cluster = c.name();
    t.pool = view.pools[cluster_id];
    t.cluster_id = c.id();
    for (const v1::Endpoint& e : c.endpoints()) t.endpoints.emplace_back(e.address(), e.port());
    t.limits = std::move(cluster_limits);
    if (c.pool().connect_timeout_ms() > 0) {
      t.connect_timeout = absl::Milliseconds(c.pool().connect_timeout_ms());
    }
    t.idle_timeout = absl::Milliseconds(c.pool().idle_timeout_ms());
    t.max_requests_per_connection = c.pool().max_requests_per_connection();
    return t;
  };
  if (decision.has_mirror() && !ex.streaming &&
      decision.mirror().cluster_id() < static_cast<uint32_t>(table.clusters_size())) {
    const uint32_t mirror_id = decision.mirror().cluster_id();
    if (decision.mirror().endpoint_index() <
        static_cast<uint32_t>(table.clusters(mirror_id).endpoints_size())) {
      // Envoy bounds a shadow request by its route's timeout; sluice also when it has none.
      const absl::Duration timeout =
          route.timeout_ms() > 0 ? absl::Milliseconds(route.timeout_ms()) : kMirrorTimeout;
      Mirror(ex, target_of(mirror_id, view.limits[mirror_id]), decision.mirror().endpoint_index(),
             timeout);
    }
  }

  Target target = target_of(decision.cluster_id(), std::move(limits));
  target.plan.retry = ToRetryPolicy(route.retry());
  target.plan.route_timeout = absl::Milliseconds(route.timeout_ms());
  target.plan.primary = decision.endpoint_index();
  target.plan.alternates.assign(decision.alternate_indexes().begin(),
                                decision.alternate_indexes().end());
  co_await Forward(ex, target);
  if (!fault_flags.empty()) ex.flags = JoinFlags(fault_flags, ex.flags);
}

asio::awaitable<void> Session::Forward(Exchange& ex, Target& target) {
  GatewayContext& context = worker_.context();
  if (target.endpoints.empty()) {
    ex.flags = "UH";
    co_await LocalReply(ex, 503, kNoHealthyUpstreamBody);
    co_return;
  }
  // A body that outgrew the retry buffer cannot be replayed: one attempt only.
  if (ex.streaming) target.plan.retry.num_retries = 0;

  auto report = [&](uint32_t endpoint, uint32_t attempt, v1::Outcome outcome, uint32_t status,
                    absl::Duration latency, const std::string& flags, bool final) {
    Report(ex, target.cluster_id, endpoint, attempt, outcome, status, latency, flags, final);
  };

  ClusterLimits::Ticket request_ticket = target.limits->TryRequest();
  if (!request_ticket) {
    context.sluice_metrics->CountOverflow(target.cluster, "requests");
    report(target.plan.primary, 0, v1::OVERFLOW, 0, absl::ZeroDuration(), "UO", true);
    ex.flags = "UO";
    co_await LocalReply(ex, 503,
                        "upstream connect error or disconnect/reset before headers. "
                        "reset reason: overflow",
                        /*overloaded=*/true);
    co_return;
  }

  RequestFlow flow(target.plan, worker_.rng());
  auto interrupt = std::make_shared<Interrupt>();
  asio::steady_timer route_timer(worker_.io());
  const event::MonotonicTime first_sent = context.clock->Now();
  RequestFlow::Step step = flow.Start(first_sent);
  // Weak: the Interrupt holds this callback for a streamed body, and must not hold itself.
  auto arm_route_timer = [&route_timer, weak = std::weak_ptr<Interrupt>(interrupt),
                          timeout = target.plan.route_timeout] {
    auto strong = weak.lock();
    if (strong == nullptr || timeout <= absl::ZeroDuration()) return;
    route_timer.expires_after(absl::ToChronoMicroseconds(timeout));
    route_timer.async_wait([strong](error_code ec) {
      if (!ec) strong->Fire();
    });
  };
  // Envoy resets the upstream request when its client disconnects: the client's socket is
  // watched from when the whole request is in until the request ends.
  auto watch_client = [this, weak = std::weak_ptr<Interrupt>(interrupt)] {
    if (auto strong = weak.lock()) WatchClient(strong);
  };
  struct EndOnExit {
    Interrupt& interrupt;
    tcp::socket& client;
    ~EndOnExit() {
      interrupt.done = true;
      error_code ec;
      client.cancel(ec);  // the watch; nothing else waits on the client now
    }
  } end_on_exit{*interrupt, stream_.socket()};
  // Envoy arms the route timeout when it has the whole request. A buffered body is whole
  // already; a streamed one is whole when its upload ends, inside the (only) attempt.
  if (ex.streaming) {
    interrupt->on_request_complete = [arm_route_timer, watch_client] {
      arm_route_timer();
      watch_client();
    };
  } else {
    arm_route_timer();
    watch_client();
  }
  ClusterLimits::Ticket retry_ticket;
  AttemptOutcome last;
  uint32_t last_endpoint = 0;
  for (;;) {
    if (step.kind == RequestFlow::Step::Kind::kAttempt) {
      last_endpoint = step.endpoint;
      const event::MonotonicTime attempt_start = context.clock->Now();
      last = co_await RunAttempt(ex, target, step.endpoint, step.attempt, *interrupt);
      const auto& [address, port] = target.endpoints[step.endpoint % target.endpoints.size()];
      ex.upstream_host = absl::StrCat(address, ":", port);
      if (last.client_read != ClientRead::kOk) {
        const bool stalled = last.client_read == ClientRead::kTimeout;
        report(last_endpoint, flow.attempts(), v1::NOT_SENT, 0,
               Since(*context.clock, attempt_start), stalled ? "SI" : "DC", true);
        interrupt->done = true;
        route_timer.cancel();
        ex.close = true;
        if (last.client_read == ClientRead::kInvalid) {
          ex.flags = "DPE";
          co_await LocalReply(ex, decoder_.error().status, RefusalBody(decoder_.error().status));
        } else if (stalled) {
          // The upload stopped arriving: Envoy's stream idle timeout (408, flag SI).
          ex.flags = "SI";
          co_await LocalReply(ex, 408, "stream timeout");
        } else {
          ex.flags = "DC";  // the client went away mid-body: nobody to answer
        }
        co_return;
      }
      if (last.stream_idle_timed_out) {
        report(last_endpoint, flow.attempts(), v1::NOT_SENT, 0,
               Since(*context.clock, attempt_start), "SI", true);
        interrupt->done = true;
        route_timer.cancel();
        ex.close = true;  // the rest of the body is still on its way
        ex.flags = "SI";
        co_await LocalReply(ex, 408, "stream timeout");
        co_return;
      }
      if (last.interrupted) {
        if (last.connection) worker_.pool().Discard(std::move(last.connection));
        if (interrupt->client_gone) {
          // Envoy resets the upstream request: not the endpoint's failure.
          report(last_endpoint, flow.attempts(), v1::NOT_SENT, 0,
                 Since(*context.clock, attempt_start), "DC", true);
          break;
        }
        step = flow.OnRouteTimeout();
        report(last_endpoint, flow.attempts(), v1::TIMEOUT, 0, Since(*context.clock, attempt_start),
               "UT", true);
        continue;
      }
      retry_ticket.Release();
      const bool slot = target.limits->RetrySlotFree();
      step = flow.OnAttempt(last.result, context.clock->Now(), slot);
      const bool retrying = step.kind == RequestFlow::Step::Kind::kBackoff;
      if (!slot && !retrying && absl::StrContains(flow.flags(), "UO") &&
          last.result.kind != AttemptResult::Kind::kOverflow) {
        target.limits->CountRetryOverflow();
        context.sluice_metrics->CountOverflow(target.cluster, "retries");
      }
      if (last.result.kind == AttemptResult::Kind::kOverflow) {
        context.sluice_metrics->CountOverflow(target.cluster, "pending");
      }
      report(last_endpoint, flow.attempts(), ReportedOutcome(last.result.kind), last.result.status,
             Since(*context.clock, attempt_start), retrying ? "-" : flow.flags(), !retrying);
      if (retrying) {
        // The response (if any) is not used: Envoy resets the upstream stream, which for
        // HTTP/1.1 means the connection goes.
        if (last.connection) worker_.pool().Discard(std::move(last.connection));
        retry_ticket = target.limits->TryRetry();
        context.sluice_metrics->CountRetry(ex.destination_host, ex.subset);
      }
      continue;
    }
    if (step.kind == RequestFlow::Step::Kind::kBackoff) {
      asio::steady_timer backoff(worker_.io());
      backoff.expires_after(absl::ToChronoMicroseconds(step.wait));
      interrupt->backoff = &backoff;
      error_code ec;
      co_await backoff.async_wait(Await(ec));
      interrupt->backoff = nullptr;
      if (interrupt->client_gone) break;  // the attempt before was reported
      step = interrupt->fired ? flow.OnRouteTimeout() : flow.OnBackoffDone(context.clock->Now());
      continue;
    }
    break;
  }

  if (interrupt->client_gone) {
    // Nobody to answer: logged as Envoy logs a downstream disconnect (response code 0).
    route_timer.cancel();
    ex.close = true;
    ex.flags = "DC";
    co_return;
  }

  if (step.kind == RequestFlow::Step::Kind::kPassResponse) {
    ex.flags = flow.flags();
    ex.upstream_service_time =
        std::to_string(absl::ToInt64Milliseconds(absl::FromChrono(last.headers_at - first_sent)));
    // The route timer still runs while the body streams: it ends the response mid-way.
    interrupt->connection = last.connection.get();
    const RelayEnd end = co_await Relay(last, ex, target);
    interrupt->connection = nullptr;
    if (end != RelayEnd::kComplete) {
      ex.close = true;
      // The client has part of a response: it must not take it for the whole. Envoy resets
      // the downstream stream; on HTTP/1.1 that is an abortive close.
      reset_on_close_ = true;
      const char* cause = interrupt->fired                ? (interrupt->client_gone ? "DC" : "UT")
                          : end == RelayEnd::kUpstreamCut ? "UC"  // Envoy's flag for it
                                                          : "DC";
      if (!absl::StrContains(ex.flags, cause)) ex.flags = JoinFlags(ex.flags, cause);
    }
  } else {
    if (last.connection) worker_.pool().Discard(std::move(last.connection));
    ex.flags = flow.flags();
    co_await LocalReply(ex, step.status, step.body, step.overloaded);
  }
  interrupt->done = true;
  route_timer.cancel();
}

// Envoy's HTTP/1.1 pool admission and connect for one request of `target` to `endpoint`:
// on success `out.connection` is open and counted; otherwise `out` says why (overflow,
// connect or DNS failure, interrupted, or a streamed request's idle timeout while queued).
asio::awaitable<bool> Session::AcquireConnection(Worker& worker, Target& target, uint32_t endpoint,
                                                 bool streaming, Interrupt& interrupt,
                                                 AttemptOutcome& out) {
  UpstreamPool& pool = worker.pool();
  const auto& [address, port] = target.endpoints[endpoint % target.endpoints.size()];
  const std::string key = absl::StrCat(address, ":", port);

  // Envoy's HTTP/1.1 pool admission (ClusterLimits::Admit): an idle connection of the
  // cluster's pool to the endpoint; else the request is pending, or overflows when the
  // cluster's queue is full, before any connection opens; a pending request opens one, or
  // waits for one of the pool's to free. It stays pending while its new connection connects.
  ClusterLimits::Ticket pending;
  const auto queued_at = std::chrono::steady_clock::now();
  for (;;) {
    if (interrupt.fired) {
      out.interrupted = true;
      co_return false;
    }
    if (auto idle =
            pool.TakeIdle(target.pool, key, target.idle_timeout, worker.context().clock->Now())) {
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
      out.connection = std::make_unique<UpstreamConnection>(worker.io().get_executor());
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
    // timer or the client leaving (Interrupt::Fire); a streamed upload's wait is bounded by
    // the idle timeout (Envoy's stream idle timeout).
    const absl::Duration waited = absl::FromChrono(std::chrono::steady_clock::now() - queued_at);
    const absl::Duration max_wait =
        streaming ? worker.context().options.idle_timeout - waited : absl::InfiniteDuration();
    if (streaming && max_wait <= absl::ZeroDuration()) {
      out.stream_idle_timed_out = true;
      co_return false;
    }
    co_await pool.WaitForRelease(target.cluster, max_wait, &interrupt.pending_wait);
    if (interrupt.fired) {
      out.interrupted = true;
      co_return false;
    }
  }
  UpstreamConnection& conn = *out.connection;
  conn.idle_timeout = target.idle_timeout;
  interrupt.connection = &conn;
  struct ClearOnExit {
    Interrupt& interrupt;
    ~ClearOnExit() { interrupt.connection = nullptr; }
  } clear{interrupt};

  error_code ec;
  if (!conn.stream.socket().is_open()) {
    // Envoy's connect timeout covers the wait for a first resolution and the connect.
    const event::MonotonicTime connect_started = worker.context().clock->Now();
    absl::StatusOr<asio::ip::address> ip = co_await ResolveEndpoint(
        *worker.context().dns, worker.io(), address, target.connect_timeout, &interrupt.dns_wait);
    if (interrupt.fired) {
      out.interrupted = true;
      co_return false;
    }
    if (!ip.ok()) {
      out.result.kind = AttemptResult::Kind::kConnectFailure;
      out.result.dns_failure = true;
      out.result.request_sent = false;
      co_return false;
    }
    const absl::Duration connect_left =
        std::max(target.connect_timeout - Since(*worker.context().clock, connect_started),
                 absl::Milliseconds(1));
    ec = co_await Connect(conn.stream, *ip, port, connect_left);
    if (interrupt.fired) {
      out.interrupted = true;
      co_return false;
    }
    if (ec) {
      out.result.kind = AttemptResult::Kind::kConnectFailure;
      out.result.request_sent = false;
      co_return false;
    }
  }
  pending.Release();  // attached to its connection
  ++conn.requests;
  co_return true;
}

asio::awaitable<Session::AttemptOutcome> Session::RunAttempt(Exchange& ex, Target& target,
                                                             uint32_t endpoint, uint32_t attempt,
                                                             Interrupt& interrupt) {
  AttemptOutcome out;
  UpstreamPool& pool = worker_.pool();
  if (!co_await AcquireConnection(worker_, target, endpoint, ex.streaming, interrupt, out)) {
    co_return out;
  }
  UpstreamConnection& conn = *out.connection;
  interrupt.connection = &conn;
  struct ClearOnExit {
    Interrupt& interrupt;
    ~ClearOnExit() { interrupt.connection = nullptr; }
  } clear{interrupt};
  error_code ec;

  // The request: the buffered body in one go, or the buffered part then the rest streamed.
  http::RequestHead& upstream = *ex.upstream;
  upstream.headers.Set("x-envoy-attempt-count", absl::StrCat(attempt));
  const bool chunked_upload = ex.streaming && ex.chunked;
  if (ex.streaming) {
    upstream.framing = ex.chunked ? http::BodyFraming::kChunked : http::BodyFraming::kContentLength;
    upstream.content_length = ex.content_length_value;
  } else if (ex.had_length || !ex.body.empty()) {
    upstream.framing = http::BodyFraming::kContentLength;
    upstream.content_length = ex.body.size();
  } else {
    upstream.framing = http::BodyFraming::kNone;
  }
  std::string& wire = conn.out;
  wire.clear();
  http::EncodeRequestHead(upstream, &wire);
  // The per-try timer: one timer for the whole try, which closes the connection when it
  // fires (the stream's own expiry would arm and cancel a timer for every operation).
  const absl::Duration per_try = target.plan.retry.per_try_timeout;
  conn.stream.expires_never();
  auto per_try_state = std::make_shared<Interrupt>();
  per_try_state->connection = &conn;
  asio::steady_timer per_try_timer(worker_.io());
  struct DisarmOnExit {
    Interrupt& state;
    asio::steady_timer& timer;
    ~DisarmOnExit() { Disarm(); }
    void Disarm() {
      state.done = true;
      timer.cancel();
    }
  } per_try_guard{*per_try_state, per_try_timer};
  // Envoy's per-try timer starts once the whole request is in the router and the connection
  // is ready: now for a buffered body, after the upload for a streamed one.
  auto arm_per_try_timer = [&per_try_timer, per_try_state, per_try] {
    if (per_try <= absl::ZeroDuration()) return;
    per_try_timer.expires_after(absl::ToChronoMicroseconds(per_try));
    per_try_timer.async_wait([per_try_state](error_code timer_ec) {
      if (!timer_ec) per_try_state->Fire();
    });
  };
  size_t written = 0;
  if (!ex.streaming) {
    arm_per_try_timer();
    // Head and body in one gathering write; the body stays where it is, for a retry.
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(wire), asio::buffer(ex.body)};
    written = co_await asio::async_write(conn.stream, buffers, Await(ec));
  } else {
    // No request timer runs while a streamed body uploads; like Envoy's stream idle timeout,
    // the idle timeout bounds each write to an upstream that stops reading.
    const auto upload_write_timeout =
        absl::ToChronoMilliseconds(worker_.context().options.idle_timeout);
    AppendBody(ex.body, chunked_upload, &wire);
    for (;;) {
      if (request_.complete()) {
        ex.body_pending = false;
        if (chunked_upload) AppendLastChunk(request_.trailers(), &wire);
      }
      if (!wire.empty()) {
        conn.stream.expires_after(upload_write_timeout);
        written += co_await asio::async_write(conn.stream, asio::buffer(wire), Await(ec));
        conn.stream.expires_never();
        wire.clear();
      }
      if (ec || request_.complete()) break;
      const ClientRead read = co_await ReadClient(worker_.context().options.idle_timeout);
      if (read != ClientRead::kOk) {
        ex.close = true;
        out.client_read = read;
        pool.Discard(std::move(out.connection));
        co_return out;
      }
      ex.bytes_received += request_.body().size();
      AppendBody(request_.body(), chunked_upload, &wire);
      request_.body().clear();
    }
    if (!ec) {
      arm_per_try_timer();
      if (interrupt.on_request_complete) std::exchange(interrupt.on_request_complete, nullptr)();
    }
  }
  // The response's head; 1xx interim responses are read and dropped by the decoder.
  conn.response.Reset();
  conn.decoder.ExpectResponse(ex.head);
  bool upstream_ok = !ec && DecodeFrom(conn.decoder, conn.in).ok();
  while (upstream_ok && conn.response.head() == nullptr) {
    upstream_ok = co_await ReadUpstream(conn);
  }
  per_try_guard.Disarm();  // the per-try timeout ends with the response headers
  if (interrupt.fired) {
    out.interrupted = true;
    co_return out;
  }
  if (!upstream_ok) {
    out.result.kind =
        per_try_state->fired ? AttemptResult::Kind::kPerTryTimeout : AttemptResult::Kind::kReset;
    out.result.request_sent = written > 0;
    pool.Discard(std::move(out.connection));
    co_return out;
  }
  out.headers_at = worker_.context().clock->Now();
  const http::ResponseHead& response = *conn.response.head();
  out.result.kind = AttemptResult::Kind::kResponse;
  out.result.status = static_cast<unsigned>(response.status);
  out.result.rate_limited = response.headers.Get("x-envoy-ratelimited").has_value();
  int grpc_status = -1;
  if (std::optional<absl::string_view> value = response.headers.Get("grpc-status");
      value.has_value() && absl::SimpleAtoi(*value, &grpc_status)) {
    out.result.grpc_status = grpc_status;
  }
  co_return out;
}

void Session::WatchClient(std::shared_ptr<Interrupt> interrupt) {
  stream_.socket().async_wait(
      tcp::socket::wait_read, [self = shared_from_this(), interrupt](error_code ec) {
        if (ec || interrupt->done || interrupt->fired || !self->stream_.socket().is_open()) return;
        char byte;
        const ssize_t n =
            ::recv(self->stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0) return;  // the next pipelined request
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
          self->WatchClient(std::move(interrupt));
          return;
        }
        // End of stream or an error: Envoy's HTTP connection manager does not half-close,
        // so a client's FIN ends its requests as a reset does.
        interrupt->Fire(/*by_client=*/true);
      });
}

asio::awaitable<Session::RelayEnd> Session::Relay(AttemptOutcome& outcome, Exchange& ex,
                                                  Target& target) {
  UpstreamConnection& conn = *outcome.connection;
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
  // A client that stops reading is given the idle timeout per write, then closed.
  const auto write_timeout = absl::ToChronoMilliseconds(worker_.context().options.idle_timeout);

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
      error_code ec;
      stream_.expires_after(write_timeout);
      co_await asio::async_write(stream_, asio::buffer(out_), Await(ec));
      stream_.expires_never();
      out_.clear();
      if (ec) {
        client_ok = false;
        break;
      }
    }
    if (complete) break;
    if (!co_await ReadUpstream(conn)) {
      upstream_ok = false;  // reset mid-body: the client's response cannot be finished
      break;
    }
  }
  // Bytes past the response's end mean the upstream's framing cannot be trusted: such a
  // connection must not carry another client's request.
  if (upstream_ok && client_ok && conn.decoder.connection_reusable() && conn.in.empty()) {
    worker_.pool().Release(std::move(outcome.connection), target.max_requests_per_connection,
                           worker_.context().clock->Now());
  } else {
    worker_.pool().Discard(std::move(outcome.connection));
  }
  co_return !client_ok ? RelayEnd::kClientGone
  : !upstream_ok       ? RelayEnd::kUpstreamCut
                       : RelayEnd::kComplete;
}

asio::awaitable<void> Session::LocalReply(Exchange& ex, unsigned status, std::string body,
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
  error_code ec;
  stream_.expires_after(absl::ToChronoMilliseconds(worker_.context().options.idle_timeout));
  co_await asio::async_write(stream_, asio::buffer(out_), Await(ec));
  stream_.expires_never();
  if (ec) ex.close = true;
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
  auto request = std::make_shared<std::string>();
  http::EncodeRequestHead(copy, request.get());
  request->append(ex.body);
  asio::co_spawn(
      worker_.io(),
      RunMirror(worker_, std::move(target), endpoint, timeout, ex.head, std::move(request)),
      asio::detached);
}

asio::awaitable<void> Session::RunMirror(Worker& worker, Target target, uint32_t endpoint,
                                         absl::Duration timeout, bool head,
                                         std::shared_ptr<const std::string> request) {
  // The mirror's own timer: it ends a wait in the pool's queue, the connect or the exchange.
  auto interrupt = std::make_shared<Interrupt>();
  asio::steady_timer timer(worker.io());
  timer.expires_after(absl::ToChronoMicroseconds(timeout));
  timer.async_wait([interrupt](error_code ec) {
    if (!ec) interrupt->Fire();
  });
  struct DisarmOnExit {
    Interrupt& interrupt;
    asio::steady_timer& timer;
    ~DisarmOnExit() {
      interrupt.done = true;
      timer.cancel();
    }
  } disarm{*interrupt, timer};
  AttemptOutcome out;
  if (!co_await AcquireConnection(worker, target, endpoint, /*streaming=*/false, *interrupt, out)) {
    // Overflow drops the copy, as Envoy's circuit breakers drop a shadow request.
    if (out.connection) worker.pool().Discard(std::move(out.connection));
    co_return;
  }
  UpstreamConnection& conn = *out.connection;
  interrupt->connection = &conn;
  error_code ec;
  co_await asio::async_write(conn.stream, asio::buffer(*request), Await(ec));
  // The response is read to its end and dropped, so that the connection can be reused.
  conn.response.Reset();
  conn.decoder.ExpectResponse(head);
  bool ok = !ec && DecodeFrom(conn.decoder, conn.in).ok();
  while (ok && !conn.response.complete()) {
    conn.response.body().clear();
    ok = co_await ReadUpstream(conn);
  }
  conn.response.body().clear();
  interrupt->connection = nullptr;
  // Kept for the next request of its pool only after a complete exchange that allows it.
  if (ok && !interrupt->fired && conn.decoder.connection_reusable() && conn.in.empty()) {
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
  v1::AttemptReport r;
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
  worker_.decisions().Report(std::move(r));
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
    context.access_log->ForWorker(worker_.index()).Append(FormatAccessLog(entry));
  }
  RequestOutcome outcome;
  outcome.destination_host = ex.destination_host.empty() ? "unknown" : ex.destination_host;
  outcome.subset = ex.subset;
  outcome.response_code = ex.response_code;
  outcome.response_flags = ex.flags;
  context.istio_metrics->Record(outcome, duration, ex.bytes_received, ex.bytes_sent);
}

}  // namespace sluice::gateway
