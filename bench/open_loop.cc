// open_loop: an open-loop HTTP/1.1 load generator with microsecond latencies, for "latency
// added at a fixed rate" (bench/latency_compare.sh). Requests are sent on a fixed schedule
// (--rate per second) whatever the answers do: a slow answer never delays the next request
// (on a busy connection's turn another connection, or a new one, takes it), so a stall shows
// in the figures instead of silently lowering the rate. Each latency runs from the request's
// write to its response's last byte, read from the clock at both ends; how late the
// generator's own 1 ms timer made each send is reported apart (lag), so that its slop does
// not pass for the proxy's. wrk and hey measure closed-loop, and hey's buckets are 0.1 ms
// wide: too coarse for a proxy's added 100 µs.
//   usage: open_loop --target HOST:PORT [--host shop] [--path /] [--rate 1000]
//                    [--duration 10s] [--warmup 1s] [--connections 32]
// Prints one line: requests=N errors=N extra_connections=N p50_us= p90_us= p99_us= p999_us=
// max_us= lag_p99_us= (the latencies of the measured requests, after the warm-up).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gateway/event/dispatcher.h"
#include "gateway/event/socket.h"
#include "gateway/event/time_source.h"
#include "gateway/event/timer_wheel.h"
#include "gateway/http/http1_codec.h"

namespace {

namespace event = sluice::gateway::event;
namespace http = sluice::gateway::http;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string authority = "shop";
  std::string path = "/";
  double rate = 1000;
  absl::Duration duration = absl::Seconds(10);
  absl::Duration warmup = absl::Seconds(1);
  int connections = 32;
};

class Generator;

// One keep-alive connection carrying one request at a time.
class Connection final : public event::IoHandler,
                         public http::DecoderCallbacks<http::ResponseHead> {
 public:
  Connection(Generator& generator, event::UniqueFd fd, bool connecting)
      : generator_(generator), fd_(std::move(fd)), connecting_(connecting), decoder_(*this) {
    in_.resize(16 * 1024);
  }
  int fd() const { return fd_.get(); }
  bool busy() const { return busy_; }
  bool broken() const { return broken_; }
  // Sends `request` now.
  void Send(const std::string& request, bool measured) {
    busy_ = true;
    sent_at_ = Clock::now();
    measured_ = measured;
    decoder_.ExpectResponse(false);
    out_ = request;
    sent_ = 0;
    Flush();
  }
  void OnReadable() override;
  void OnWritable() override {
    if (connecting_) {
      connecting_ = false;
      if (!event::ConnectResult(fd_.get()).ok()) return Break();
    }
    Flush();
  }
  void OnHead(http::ResponseHead& head) override { status_ = head.status; }
  void OnData(absl::string_view) override {}
  void OnTrailers(http::HeaderMap&) override {}
  void OnComplete() override;

 private:
  void Flush() {
    if (connecting_) return;
    while (sent_ < out_.size()) {
      const event::IoResult r =
          event::WriteSome(fd_.get(), out_.data() + sent_, out_.size() - sent_);
      if (r.kind == event::IoResult::Kind::kAgain) return;
      if (!r.data()) return Break();
      sent_ += r.bytes;
    }
  }
  void Break();

  Generator& generator_;
  event::UniqueFd fd_;
  bool connecting_;
  http::ResponseDecoder decoder_;
  std::string in_;
  std::string out_;
  size_t sent_ = 0;
  bool busy_ = false;
  bool broken_ = false;
  bool measured_ = false;
  int status_ = 0;
  Clock::time_point sent_at_;
};

class Generator {
 public:
  Generator(event::Dispatcher& dispatcher, const Options& options)
      : dispatcher_(dispatcher), options_(options), tick_(dispatcher.timers()) {
    request_ = absl::StrCat("GET ", options.path, " HTTP/1.1\r\nHost: ", options.authority,
                            "\r\nUser-Agent: sluice-open-loop\r\n\r\n");
    interval_ = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / options.rate));
  }

  bool Start() {
    for (int i = 0; i < options_.connections; ++i) {
      if (!Open()) return false;
    }
    start_ = Clock::now();
    measure_from_ = start_ + absl::ToChronoNanoseconds(options_.warmup);
    end_ = measure_from_ + absl::ToChronoNanoseconds(options_.duration);
    next_due_ = start_;
    Tick();
    return true;
  }

  // Sends every request due by now, each on an idle connection (a new one if none is).
  void Tick() {
    const Clock::time_point now = Clock::now();
    while (next_due_ <= now && next_due_ < end_) {
      Connection* idle = nullptr;
      for (auto& c : connections_) {
        if (!c->busy() && !c->broken()) {
          idle = c.get();
          break;
        }
      }
      if (idle == nullptr) {
        ++extra_connections_;  // every connection busy: the schedule goes on, on a new one
        if (!Open()) {
          ++errors_;
          next_due_ += interval_;
          continue;
        }
        idle = connections_.back().get();
      }
      const bool measured = next_due_ >= measure_from_;
      if (measured) {
        lags_us_.push_back(
            std::chrono::duration_cast<std::chrono::microseconds>(now - next_due_).count());
      }
      idle->Send(request_, measured);
      next_due_ += interval_;
    }
    if (next_due_ >= end_) {
      if (outstanding() == 0 || now > end_ + std::chrono::seconds(5)) {
        dispatcher_.Exit();
        return;
      }
      tick_.ArmAfter(std::chrono::milliseconds(1),
                     event::TimerCallback::Bind<&Generator::Tick>(this));
      return;
    }
    // The wheel's tick is 1 ms: wake at the next due time, rounded up to it.
    tick_.ArmAt(dispatcher_.Now() + (next_due_ - now),
                event::TimerCallback::Bind<&Generator::Tick>(this));
  }

  void Done(Clock::time_point sent_at, bool measured, bool ok) {
    if (!measured) return;
    if (!ok) {
      ++errors_;
      return;
    }
    latencies_us_.push_back(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent_at).count());
  }

  void Report() {
    std::sort(latencies_us_.begin(), latencies_us_.end());
    std::sort(lags_us_.begin(), lags_us_.end());
    auto pct = [](const std::vector<int64_t>& v, double p) -> long {
      if (v.empty()) return -1;
      return static_cast<long>(
          v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))]);
    };
    std::printf(
        "requests=%zu errors=%lu extra_connections=%lu p50_us=%ld p90_us=%ld p99_us=%ld "
        "p999_us=%ld max_us=%ld lag_p99_us=%ld\n",
        latencies_us_.size(), static_cast<unsigned long>(errors_),
        static_cast<unsigned long>(extra_connections_), pct(latencies_us_, 0.50),
        pct(latencies_us_, 0.90), pct(latencies_us_, 0.99), pct(latencies_us_, 0.999),
        latencies_us_.empty() ? -1L : static_cast<long>(latencies_us_.back()), pct(lags_us_, 0.99));
  }

 private:
  bool Open() {
    auto connecting = event::ConnectTcp(options_.host, options_.port);
    if (!connecting.ok()) return false;
    auto c =
        std::make_unique<Connection>(*this, std::move(connecting->fd), connecting->in_progress);
    if (!dispatcher_.RegisterFd(c->fd(), c.get()).ok()) return false;
    connections_.push_back(std::move(c));
    return true;
  }
  size_t outstanding() const {
    size_t n = 0;
    for (const auto& c : connections_) n += c->busy() && !c->broken();
    return n;
  }

  event::Dispatcher& dispatcher_;
  const Options options_;
  event::Timer tick_;
  std::string request_;
  std::chrono::nanoseconds interval_;
  Clock::time_point start_, measure_from_, end_, next_due_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<int64_t> latencies_us_;
  std::vector<int64_t> lags_us_;  // how late each measured request was sent
  uint64_t errors_ = 0;
  uint64_t extra_connections_ = 0;
};

void Connection::OnReadable() {
  for (;;) {
    const event::IoResult r = event::ReadSome(fd_.get(), in_.data(), in_.size());
    if (r.kind == event::IoResult::Kind::kAgain) return;
    if (!r.data() || r.bytes == 0) return Break();
    size_t consumed = 0;
    if (!decoder_.Decode(absl::string_view(in_.data(), r.bytes), &consumed).ok()) return Break();
    if (broken_ || r.bytes < in_.size()) return;
  }
}

void Connection::OnComplete() {
  busy_ = false;
  generator_.Done(sent_at_, measured_, status_ >= 200 && status_ < 400);
  if (!decoder_.connection_reusable()) Break();
}

void Connection::Break() {
  if (broken_) return;
  broken_ = true;
  if (busy_) {
    busy_ = false;
    generator_.Done(sent_at_, measured_, false);
  }
}

bool ParseDuration(const std::string& text, absl::Duration* out) {
  return absl::ParseDuration(text, out) && *out >= absl::ZeroDuration();
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    bool ok = true;
    if (flag == "--target") {
      const size_t colon = value.rfind(':');
      uint32_t port = 0;
      ok = colon != std::string::npos && absl::SimpleAtoi(value.substr(colon + 1), &port) &&
           port > 0 && port < 65536;
      options.host = value.substr(0, colon);
      options.port = static_cast<uint16_t>(port);
    } else if (flag == "--host") {
      options.authority = value;
    } else if (flag == "--path") {
      options.path = value;
    } else if (flag == "--rate") {
      ok = absl::SimpleAtod(value, &options.rate) && options.rate > 0 && options.rate <= 1e6;
    } else if (flag == "--duration") {
      ok = ParseDuration(value, &options.duration);
    } else if (flag == "--warmup") {
      ok = ParseDuration(value, &options.warmup);
    } else if (flag == "--connections") {
      ok = absl::SimpleAtoi(value, &options.connections) && options.connections > 0 &&
           options.connections <= 10000;
    } else {
      ok = false;
    }
    if (!ok) {
      std::cerr << "open_loop: bad argument " << flag << " " << value << "\n";
      return 2;
    }
  }
  if (options.port == 0) {
    std::cerr << "usage: open_loop --target HOST:PORT [--host H] [--path P] [--rate R] "
                 "[--duration D] [--warmup D] [--connections N]\n";
    return 2;
  }
  event::RealTimeSource time_source;
  auto dispatcher = event::Dispatcher::Create(time_source);
  if (!dispatcher.ok()) {
    std::cerr << "open_loop: " << dispatcher.status() << "\n";
    return 1;
  }
  Generator generator(**dispatcher, options);
  if (!generator.Start()) {
    std::cerr << "open_loop: cannot connect to " << options.host << ":" << options.port << "\n";
    return 1;
  }
  (*dispatcher)->Run();
  generator.Report();
  return 0;
}
