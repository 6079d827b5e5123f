// core_task_proxy: core_floor_proxy's job written as coroutines on the same event core
// (gateway/event's Task, AsyncSocket and timers; the HTTP/1 codec), for bench/proxy_compare.sh
// (PROXIES="... core-floor core-task"). The question it answers: does request code written as
// a sequence (read the head, take a connection, write, read the response, answer), the shape
// of the gateway's Session, cost more on the new core than hand-written callbacks? Each
// client connection is one coroutine; each request awaits leaf operations that live in its
// frame; frames come from the per-thread pool. Same work as core_floor_proxy: a keep-alive
// client, a 90/10 weighted pick, kept-alive upstream connections, an idle timer per
// connection and a route and a per-try timer per request, armed and cancelled.
//   usage: core_task_proxy --listen HOST:PORT --upstream HOST:PORT:WEIGHT [--upstream ...]
// Prints "listening http=HOST:PORT" once it accepts connections.
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/floor_args.h"
#include "gateway/event/async_socket.h"
#include "gateway/event/dispatcher.h"
#include "gateway/event/socket.h"
#include "gateway/event/task.h"
#include "gateway/event/time_source.h"
#include "gateway/event/timer_wheel.h"
#include "gateway/http/http1_codec.h"
#include "gateway/http/message_collector.h"

namespace {

namespace event = sluice::gateway::event;
namespace http = sluice::gateway::http;

constexpr size_t kReadSize = 16 * 1024;
constexpr std::chrono::seconds kIdleTimeout(60);
constexpr std::chrono::seconds kRouteTimeout(15);
constexpr std::chrono::seconds kPerTryTimeout(10);

using Upstream = sluice::bench::FloorUpstream;

// A timer that cancels a socket's operations (ETIMEDOUT) when it fires.
event::TimerCallback TimeOut(event::AsyncSocket& socket) {
  return event::TimerCallback(
      [](void* s) { static_cast<event::AsyncSocket*>(s)->Cancel(ETIMEDOUT); }, &socket);
}

// Decodes `read` after what `in` holds; what is left over stays in `in`.
template <typename Decoder>
bool DecodeRead(Decoder& decoder, std::string& in, absl::string_view read) {
  in.append(read.data(), read.size());
  size_t consumed = 0;
  const bool ok = decoder.Decode(in, &consumed).ok();
  in.erase(0, consumed);
  return ok;
}

struct UpstreamConnection {
  size_t upstream = 0;
  std::unique_ptr<event::AsyncSocket> socket;
  http::MessageCollector<http::ResponseHead> response;
  http::ResponseDecoder decoder{response};
  std::string in;
  std::string out;
  std::array<char, kReadSize> chunk;
};

class Proxy {
 public:
  Proxy(event::Dispatcher& dispatcher, std::vector<Upstream> upstreams)
      : dispatcher_(dispatcher), upstreams_(std::move(upstreams)), idle_(upstreams_.size()) {
    for (const Upstream& u : upstreams_) total_weight_ += u.weight;
  }
  event::Dispatcher& dispatcher() { return dispatcher_; }

  size_t Pick() {  // the same xorshift draw as core_floor_proxy
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    uint64_t draw = rng_ % total_weight_;
    for (size_t i = 0; i < upstreams_.size(); ++i) {
      if (draw < upstreams_[i].weight) return i;
      draw -= upstreams_[i].weight;
    }
    return 0;
  }
  // An idle connection to `upstream`, or a new one whose connect is under way (nullptr if
  // it failed at once).
  std::unique_ptr<UpstreamConnection> Take(size_t upstream) {
    if (!idle_[upstream].empty()) {
      std::unique_ptr<UpstreamConnection> c = std::move(idle_[upstream].back());
      idle_[upstream].pop_back();
      return c;
    }
    auto connecting = event::ConnectTcp(upstreams_[upstream].address);
    if (!connecting.ok()) return nullptr;
    auto socket =
        event::AsyncSocket::Create(dispatcher_, std::move(connecting->fd), connecting->in_progress);
    if (!socket.ok()) return nullptr;
    auto c = std::make_unique<UpstreamConnection>();
    c->upstream = upstream;
    c->socket = *std::move(socket);
    return c;
  }
  void Release(std::unique_ptr<UpstreamConnection> c) {
    idle_[c->upstream].push_back(std::move(c));
  }

 private:
  event::Dispatcher& dispatcher_;
  std::vector<Upstream> upstreams_;
  uint64_t total_weight_ = 0;
  uint64_t rng_ = 0x9E3779B97F4A7C15ull;
  std::vector<std::vector<std::unique_ptr<UpstreamConnection>>> idle_;
};

// One request's exchange with an upstream: the response (head and body) appended to
// `client_out`, encoded for the client. False when the upstream failed.
event::Task<bool> Exchange(Proxy& proxy, http::RequestHead& head, std::string& body,
                           std::string& client_out) {
  std::unique_ptr<UpstreamConnection> conn = proxy.Take(proxy.Pick());
  if (conn == nullptr) co_return false;
  if (!(co_await conn->socket->Connect()).ok()) co_return false;
  event::TimerWheel& wheel = proxy.dispatcher().timers();
  event::Timer route(wheel);
  event::Timer per_try(wheel);
  route.ArmAfter(kRouteTimeout, TimeOut(*conn->socket));
  per_try.ArmAfter(kPerTryTimeout, TimeOut(*conn->socket));
  conn->out.clear();
  http::EncodeRequestHead(head, &conn->out);
  if (!(co_await conn->socket->Write(conn->out, body)).data()) co_return false;
  conn->response.Reset();
  conn->decoder.ExpectResponse(head.method == "HEAD");
  while (conn->response.head() == nullptr || !conn->response.complete()) {
    const event::IoResult r = co_await conn->socket->Read(conn->chunk.data(), kReadSize);
    if (r.kind == event::IoResult::Kind::kEof) {
      if (!conn->decoder.DecodeEof().ok() || !conn->response.complete()) co_return false;
      break;
    }
    if (!r.data() || !DecodeRead(conn->decoder, conn->in, {conn->chunk.data(), r.bytes})) {
      co_return false;
    }
    if (conn->response.head() != nullptr) per_try.Cancel();
  }
  http::ResponseHead& response = *conn->response.head();
  response.headers.Remove("connection");
  response.headers.Remove("keep-alive");
  response.headers.Remove("transfer-encoding");
  response.headers.Remove("content-length");
  http::BodyFraming framing = response.framing;
  uint64_t length = response.content_length;
  if (framing != http::BodyFraming::kContentLength && response.has_body) {
    framing = http::BodyFraming::kContentLength;  // the whole body is here: give its length
    length = conn->response.body().size();
  }
  http::EncodeResponseHead(response.status, response.reason, response.headers, framing, length,
                           head.keep_alive, &client_out);
  client_out.append(conn->response.body());
  if (conn->decoder.connection_reusable() && conn->in.empty()) proxy.Release(std::move(conn));
  co_return true;
}

// One client connection, request after request.
event::Task<void> ServeClient(Proxy& proxy, event::UniqueFd fd) {
  auto created = event::AsyncSocket::Create(proxy.dispatcher(), std::move(fd));
  if (!created.ok()) co_return;
  std::unique_ptr<event::AsyncSocket> client = *std::move(created);
  http::MessageCollector<http::RequestHead> request;
  http::RequestDecoder decoder(request);
  std::string in;
  std::string out;
  std::string body;
  auto chunk = std::make_unique<std::array<char, kReadSize>>();
  event::Timer idle(proxy.dispatcher().timers());
  for (;;) {
    request.Reset();
    decoder.ResumeNextMessage();
    bool ok = DecodeRead(decoder, in, {});
    idle.ArmAfter(kIdleTimeout, TimeOut(*client));
    while (ok && !request.complete()) {
      const event::IoResult r = co_await client->Read(chunk->data(), kReadSize);
      ok = r.data() && DecodeRead(decoder, in, {chunk->data(), r.bytes});
    }
    idle.Cancel();
    if (!ok) break;
    http::RequestHead& head = *request.head();
    const bool keep_alive = head.keep_alive;
    // The encoder writes the framing and connection fields itself.
    head.headers.Remove("connection");
    head.headers.Remove("keep-alive");
    head.headers.Remove("transfer-encoding");
    head.headers.Remove("content-length");
    body.swap(request.body());
    request.body().clear();
    head.framing = body.empty() ? http::BodyFraming::kNone : http::BodyFraming::kContentLength;
    head.content_length = body.size();
    head.keep_alive = true;
    out.clear();
    if (!co_await Exchange(proxy, head, body, out)) {
      out = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
      (void)co_await client->Write(out);
      break;
    }
    if (!(co_await client->Write(out)).data() || !keep_alive) break;
  }
  // The socket is closed here; deferred, as its own event may be what resumed us.
  proxy.dispatcher().DeferredDelete(std::move(client));
}

class Listener final : public event::IoHandler {
 public:
  Listener(Proxy& proxy, event::UniqueFd fd) : proxy_(proxy), fd_(std::move(fd)) {}
  int fd() const { return fd_.get(); }
  void OnReadable() override {
    const absl::Status status =
        event::AcceptAll(fd_.get(), [&](event::UniqueFd fd, const event::SocketAddress&) {
          event::Spawn(ServeClient(proxy_, std::move(fd)));
        });
    if (!status.ok()) std::cerr << "core_task_proxy: accept: " << status << "\n";
  }
  void OnWritable() override {}

 private:
  Proxy& proxy_;
  event::UniqueFd fd_;
};

}  // namespace

int main(int argc, char** argv) {
  std::optional<sluice::bench::FloorArgs> args =
      sluice::bench::ParseFloorArgs(argc, argv, "core_task_proxy");
  if (!args.has_value()) return 2;
  const std::string& listen_host = args->listen_host;
  event::RealTimeSource time_source;
  auto dispatcher = event::Dispatcher::Create(time_source);
  auto listen = event::ListenTcp(listen_host, args->listen_port, /*reuse_port=*/false, 1024);
  if (!dispatcher.ok() || !listen.ok()) {
    std::cerr << "core_task_proxy: cannot start: "
              << (dispatcher.ok() ? listen.status() : dispatcher.status()) << "\n";
    return 1;
  }
  Proxy proxy(**dispatcher, std::move(args->upstreams));
  const uint16_t port = listen->port;
  Listener listener(proxy, std::move(listen->fd));
  if (!(*dispatcher)->RegisterFd(listener.fd(), &listener, event::kIoReadable).ok()) return 1;
  std::printf("listening http=%s:%u\n", listen_host.c_str(), port);
  std::fflush(stdout);
  (*dispatcher)->Run();
  return 0;
}
