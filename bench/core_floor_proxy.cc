// core_floor_proxy: the least a reverse proxy on sluice-gateway's new core costs per request,
// for bench/proxy_compare.sh (PROXIES="... core-floor"), beside floor_proxy.cc (the same on
// Boost.Beast and Asio coroutines). One thread: the event core's Dispatcher (edge-triggered
// epoll, one clock read per wake-up), its timer wheel, and the HTTP/1 codec (llhttp) with
// reused buffers. It does what every proxy in that comparison must (read a keep-alive
// client's request, pick an upstream by weight, forward it on a kept-alive upstream
// connection, relay the response) plus the timer work an Envoy-like router does on every
// request: an idle timer per connection, and a route and a per-try timer per request, armed
// and cancelled. No decision, retries, header rules, metrics or limits: what the gateway
// costs beyond this is its features; what this costs beyond HAProxy is the core's.
//   usage: core_floor_proxy --listen HOST:PORT --upstream HOST:PORT:WEIGHT [--upstream ...]
//                           [--poller epoll|io_uring]
// `--poller` picks the dispatcher's readiness API (default epoll), so that the two can be
// compared in one run (PROXIES="... core-floor core-floor-uring"). Prints "listening
// http=HOST:PORT" once it accepts connections.
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/floor_args.h"
#include "gateway/event/dispatcher.h"
#include "gateway/event/poller.h"
#include "gateway/event/socket.h"
#include "gateway/event/time_source.h"
#include "gateway/event/timer_wheel.h"
#include "gateway/http/http1_codec.h"

namespace {

namespace event = sluice::gateway::event;
namespace http = sluice::gateway::http;

constexpr size_t kReadSize = 16 * 1024;
constexpr std::chrono::seconds kIdleTimeout(60);
constexpr std::chrono::seconds kRouteTimeout(15);
constexpr std::chrono::seconds kPerTryTimeout(10);

using Upstream = sluice::bench::FloorUpstream;

// A byte buffer read into at its end and consumed from its front; its storage is kept, so a
// connection's steady state allocates nothing.
class InputBuffer {
 public:
  InputBuffer() { bytes_.resize(kReadSize); }
  // Room for one read of kReadSize at the end.
  char* WritePointer() {
    if (start_ == end_) start_ = end_ = 0;
    if (bytes_.size() - end_ < kReadSize) {
      if (start_ > 0) {
        bytes_.erase(0, start_);
        end_ -= start_;
        start_ = 0;
      }
      if (bytes_.size() - end_ < kReadSize) bytes_.resize(end_ + kReadSize);
    }
    return bytes_.data() + end_;
  }
  void Commit(size_t n) { end_ += n; }
  absl::string_view Readable() const { return {bytes_.data() + start_, end_ - start_}; }
  void Consume(size_t n) { start_ += n; }

 private:
  std::string bytes_;
  size_t start_ = 0, end_ = 0;
};

// Writes `out` from `*sent`; true when all of it is written (the caller clears it).
bool FlushBuffer(int fd, const std::string& out, size_t* sent, bool* failed) {
  while (*sent < out.size()) {
    const event::IoResult r = event::WriteSome(fd, out.data() + *sent, out.size() - *sent);
    if (r.kind == event::IoResult::Kind::kAgain) return false;
    if (!r.data()) {
      *failed = true;
      return false;
    }
    *sent += r.bytes;
  }
  return true;
}

class Proxy;
class ClientConnection;

// A kept-alive connection to one upstream, carrying one request at a time.
class UpstreamConnection final : public event::IoHandler,
                                 public http::DecoderCallbacks<http::ResponseHead> {
 public:
  UpstreamConnection(Proxy& proxy, size_t upstream, event::UniqueFd fd, bool connecting)
      : proxy_(proxy),
        upstream_(upstream),
        fd_(std::move(fd)),
        connecting_(connecting),
        decoder_(*this) {}

  int fd() const { return fd_.get(); }
  size_t upstream() const { return upstream_; }
  std::string& out() { return out_; }
  void Attach(ClientConnection* client, bool head_request) {
    client_ = client;
    decoder_.ExpectResponse(head_request);
  }
  void Detach() { client_ = nullptr; }
  void Flush();
  void Close();

  void OnReadable() override;
  void OnWritable() override {
    if (connecting_) {
      connecting_ = false;
      if (!event::ConnectResult(fd_.get()).ok()) return Fail();
    }
    Flush();
  }
  void OnHead(http::ResponseHead& head) override;
  void OnData(absl::string_view data) override;
  void OnTrailers(http::HeaderMap&) override {}
  void OnComplete() override;

 private:
  void Fail();

  Proxy& proxy_;
  const size_t upstream_;
  event::UniqueFd fd_;
  bool connecting_;
  http::ResponseDecoder decoder_;
  ClientConnection* client_ = nullptr;
  InputBuffer in_;
  std::string out_;
  size_t out_sent_ = 0;
  bool chunked_to_client_ = false;
  bool closed_ = false;
};

class Proxy {
 public:
  Proxy(event::Dispatcher& dispatcher, std::vector<Upstream> upstreams)
      : dispatcher_(dispatcher), upstreams_(std::move(upstreams)), idle_(upstreams_.size()) {
    for (const Upstream& u : upstreams_) total_weight_ += u.weight;
  }
  event::Dispatcher& dispatcher() { return dispatcher_; }

  // Weighted choice with a xorshift generator: cheap, and the split is what matters here.
  size_t Pick() {
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
  // An idle connection to `upstream`, or a new one (nullptr if the connect fails at once).
  UpstreamConnection* Take(size_t upstream) {
    if (!idle_[upstream].empty()) {
      UpstreamConnection* c = idle_[upstream].back();
      idle_[upstream].pop_back();
      return c;
    }
    auto connecting = event::ConnectTcp(upstreams_[upstream].address);
    if (!connecting.ok()) return nullptr;
    auto* c =
        new UpstreamConnection(*this, upstream, std::move(connecting->fd), connecting->in_progress);
    if (!dispatcher_.RegisterFd(c->fd(), c).ok()) {
      delete c;
      return nullptr;
    }
    return c;
  }
  void Release(UpstreamConnection* c) { idle_[c->upstream()].push_back(c); }
  void Forget(UpstreamConnection* c) {
    auto& list = idle_[c->upstream()];
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i] == c) {
        list[i] = list.back();
        list.pop_back();
        return;
      }
    }
  }

 private:
  event::Dispatcher& dispatcher_;
  std::vector<Upstream> upstreams_;
  uint64_t total_weight_ = 0;
  uint64_t rng_ = 0x9E3779B97F4A7C15ull;
  std::vector<std::vector<UpstreamConnection*>> idle_;
};

// One client connection: requests decoded one at a time, each forwarded and answered.
class ClientConnection final : public event::IoHandler,
                               public http::DecoderCallbacks<http::RequestHead> {
 public:
  ClientConnection(Proxy& proxy, event::UniqueFd fd)
      : proxy_(proxy),
        fd_(std::move(fd)),
        decoder_(*this),
        idle_timer_(proxy.dispatcher().timers()),
        route_timer_(proxy.dispatcher().timers()),
        per_try_timer_(proxy.dispatcher().timers()) {
    idle_timer_.ArmAfter(kIdleTimeout, event::TimerCallback::Bind<&ClientConnection::Close>(this));
  }

  int fd() const { return fd_.get(); }
  std::string& out() { return out_; }
  bool keep_alive() const { return keep_alive_; }

  void OnReadable() override {
    for (;;) {
      char* at = in_.WritePointer();
      const event::IoResult r = event::ReadSome(fd_.get(), at, kReadSize);
      if (r.kind == event::IoResult::Kind::kAgain) break;
      if (!r.data() || r.bytes == 0) return Close();
      in_.Commit(r.bytes);
      Process();
      if (closed_ || r.bytes < kReadSize) break;  // a short read drained the socket
    }
  }
  void OnWritable() override { Flush(); }

  // Decodes what is buffered while the decoder is not waiting for a response.
  void Process() {
    while (!closed_ && upstream_ == nullptr && !in_.Readable().empty()) {
      size_t consumed = 0;
      if (!decoder_.Decode(in_.Readable(), &consumed).ok()) {
        out_.append("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        close_after_flush_ = true;
        Flush();
        return;
      }
      in_.Consume(consumed);
      if (consumed == 0) break;
    }
  }

  void OnHead(http::RequestHead& head) override {
    idle_timer_.Cancel();
    keep_alive_ = head.keep_alive;
    chunked_request_ = head.framing == http::BodyFraming::kChunked;
    upstream_ = proxy_.Take(proxy_.Pick());
    if (upstream_ == nullptr) return Close();
    upstream_->Attach(this, head.method == "HEAD");
    // The encoder writes the framing and connection fields itself.
    head.headers.Remove("connection");
    head.headers.Remove("keep-alive");
    head.headers.Remove("transfer-encoding");
    head.headers.Remove("content-length");
    head.keep_alive = true;
    http::EncodeRequestHead(head, &upstream_->out());
  }
  void OnData(absl::string_view data) override {
    if (chunked_request_) {
      http::EncodeChunk(data, &upstream_->out());
    } else {
      upstream_->out().append(data.data(), data.size());
    }
  }
  void OnTrailers(http::HeaderMap&) override {}
  void OnComplete() override {
    if (chunked_request_) http::EncodeLastChunk(&upstream_->out());
    route_timer_.ArmAfter(kRouteTimeout,
                          event::TimerCallback::Bind<&ClientConnection::Close>(this));
    per_try_timer_.ArmAfter(kPerTryTimeout,
                            event::TimerCallback::Bind<&ClientConnection::Close>(this));
    upstream_->Flush();
  }

  // From the upstream connection.
  void OnResponseHeadersDone() { per_try_timer_.Cancel(); }
  void OnResponseComplete() {
    route_timer_.Cancel();
    upstream_ = nullptr;
    if (!keep_alive_) close_after_flush_ = true;
    Flush();
    if (closed_ || close_after_flush_) return;
    idle_timer_.ArmAfter(kIdleTimeout, event::TimerCallback::Bind<&ClientConnection::Close>(this));
    decoder_.ResumeNextMessage();
    Process();  // a pipelined request already buffered
  }
  void OnUpstreamFailed() {
    upstream_ = nullptr;
    out_.append(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    close_after_flush_ = true;
    Flush();
  }

  void Flush() {
    bool failed = false;
    if (FlushBuffer(fd_.get(), out_, &out_sent_, &failed)) {
      out_.clear();
      out_sent_ = 0;
      if (close_after_flush_) Close();
    } else if (failed) {
      Close();
    }
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    if (upstream_ != nullptr) {
      upstream_->Detach();
      upstream_->Close();  // its response can no longer be delivered
      upstream_ = nullptr;
    }
    idle_timer_.Cancel();
    route_timer_.Cancel();
    per_try_timer_.Cancel();
    (void)proxy_.dispatcher().Unregister(fd_.get());
    fd_.reset();
    proxy_.dispatcher().DeferredDelete(std::unique_ptr<ClientConnection>(this));
  }

 private:
  Proxy& proxy_;
  event::UniqueFd fd_;
  http::RequestDecoder decoder_;
  InputBuffer in_;
  std::string out_;
  size_t out_sent_ = 0;
  UpstreamConnection* upstream_ = nullptr;
  bool keep_alive_ = true;
  bool chunked_request_ = false;
  bool close_after_flush_ = false;
  bool closed_ = false;
  event::Timer idle_timer_;
  event::Timer route_timer_;
  event::Timer per_try_timer_;
};

void UpstreamConnection::Flush() {
  if (connecting_) return;  // the connect's completion flushes
  bool failed = false;
  if (FlushBuffer(fd_.get(), out_, &out_sent_, &failed)) {
    out_.clear();
    out_sent_ = 0;
  } else if (failed) {
    Fail();
  }
}

void UpstreamConnection::OnReadable() {
  for (;;) {
    char* at = in_.WritePointer();
    const event::IoResult r = event::ReadSome(fd_.get(), at, kReadSize);
    if (r.kind == event::IoResult::Kind::kAgain) break;
    if (!r.data() || r.bytes == 0) {
      if (client_ != nullptr && decoder_.DecodeEof().ok() && decoder_.message_complete()) {
        return Close();  // a body delimited by the close, now complete
      }
      return Fail();
    }
    in_.Commit(r.bytes);
    size_t consumed = 0;
    const absl::Status status = decoder_.Decode(in_.Readable(), &consumed);
    in_.Consume(consumed);
    if (closed_) return;
    if (!status.ok()) return Fail();
    if (r.bytes < kReadSize) break;
  }
}

void UpstreamConnection::OnHead(http::ResponseHead& head) {
  if (client_ == nullptr) return;
  client_->OnResponseHeadersDone();
  head.headers.Remove("connection");
  head.headers.Remove("keep-alive");
  head.headers.Remove("transfer-encoding");
  head.headers.Remove("content-length");
  http::BodyFraming framing = head.framing;
  if (framing == http::BodyFraming::kUntilClose) framing = http::BodyFraming::kChunked;
  chunked_to_client_ = framing == http::BodyFraming::kChunked && head.has_body;
  http::EncodeResponseHead(head.status, head.reason, head.headers, framing, head.content_length,
                           client_->keep_alive(), &client_->out());
}

void UpstreamConnection::OnData(absl::string_view data) {
  if (client_ == nullptr) return;
  if (chunked_to_client_) {
    http::EncodeChunk(data, &client_->out());
  } else {
    client_->out().append(data.data(), data.size());
  }
}

void UpstreamConnection::OnComplete() {
  if (client_ == nullptr) return;
  if (chunked_to_client_) http::EncodeLastChunk(&client_->out());
  ClientConnection* client = client_;
  client_ = nullptr;
  if (decoder_.connection_reusable()) {
    proxy_.Release(this);
  } else {
    Close();
  }
  client->OnResponseComplete();
}

void UpstreamConnection::Fail() {
  ClientConnection* client = client_;
  Close();
  if (client != nullptr) client->OnUpstreamFailed();
}

void UpstreamConnection::Close() {
  if (closed_) return;
  closed_ = true;
  client_ = nullptr;
  proxy_.Forget(this);
  (void)proxy_.dispatcher().Unregister(fd_.get());
  fd_.reset();
  proxy_.dispatcher().DeferredDelete(std::unique_ptr<UpstreamConnection>(this));
}

class Listener final : public event::IoHandler {
 public:
  Listener(Proxy& proxy, event::UniqueFd fd) : proxy_(proxy), fd_(std::move(fd)) {}
  int fd() const { return fd_.get(); }
  void OnReadable() override {
    const absl::Status status =
        event::AcceptAll(fd_.get(), [&](event::UniqueFd fd, const event::SocketAddress&) {
          auto* c = new ClientConnection(proxy_, std::move(fd));
          if (!proxy_.dispatcher().RegisterFd(c->fd(), c).ok()) c->Close();
        });
    if (!status.ok()) std::cerr << "core_floor_proxy: accept: " << status << "\n";
  }
  void OnWritable() override {}

 private:
  Proxy& proxy_;
  event::UniqueFd fd_;
};

}  // namespace

int main(int argc, char** argv) {
  std::optional<sluice::bench::FloorArgs> args =
      sluice::bench::ParseFloorArgs(argc, argv, "core_floor_proxy");
  if (!args.has_value()) return 2;
  const std::string& listen_host = args->listen_host;
  event::RealTimeSource time_source;
  absl::StatusOr<std::unique_ptr<event::Poller>> poller =
      args->poller == "io_uring" ? event::CreateIoUringPoller() : event::CreateEpollPoller();
  if (!poller.ok()) {
    std::cerr << "core_floor_proxy: no " << args->poller << " poller: " << poller.status() << "\n";
    return 1;
  }
  auto dispatcher = event::Dispatcher::Create(time_source, std::move(*poller));
  auto listen = event::ListenTcp(listen_host, args->listen_port, /*reuse_port=*/false, 1024);
  if (!dispatcher.ok() || !listen.ok()) {
    std::cerr << "core_floor_proxy: cannot start: "
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
