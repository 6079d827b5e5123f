// sluice-stub: an upstream for tests, demos and benchmarks. What it does with a request is
// chosen per request (query parameter or x-stub-* header), or for the whole instance by
// flags and by /stub/config at run time. It names itself in every response and counts what
// it receives.
//
//   sluice-stub --listen HOST:PORT --name NAME [--subset S] [--error-rate F]
//               [--latency DURATION] [--threads N] [--seed N]      (--help lists them)
//   prints: listening http=HOST:PORT name=NAME
//
// Per request (query `?status=503` or header `x-stub-status: 503`):
//   status=N           answer N (a comma list picks by x-envoy-attempt-count: "503,200"
//                      answers 503 to the first attempt and 200 to the second)
//   delay=DURATION     wait before answering (e.g. 150ms)
//   reset=before       close the connection without answering
//   reset=after        send headers and part of the body, then close
//   hang=DURATION      accept the request and say nothing for that long, then close
//   body=N             answer with N bytes of body
// A client that closes its connection during a delay or a hang ends it: the stub closes its
// side within 10ms (so open_connections shows when a proxy gives up on a request), and the
// request counts with status 0.
// Instance: --error-rate F answers 503 to that share of requests; --latency adds a delay.
// Control:  GET /stub/stats (counts, and open connections as JSON: those that have received a
//           counted request, from its arrival to their close), POST /stub/reset,
//           POST /stub/config?error-rate=F&latency=D (not counted).

#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gateway/http/beast.h"
#include "lib/common/flags.h"
#include "lib/common/host_port.h"
#include "lib/common/signals.h"

ABSL_FLAG(sluice::HostPort, listen, (sluice::HostPort{"127.0.0.1", 0}),
          "HOST:PORT to listen on; port 0 picks a free port.");
ABSL_FLAG(std::string, name, "stub", "Named in every response (x-stub-name) and in /stub/stats.");
ABSL_FLAG(std::string, subset, "", "Named in every response (x-stub-subset) when set.");
ABSL_FLAG(double, error_rate, 0,
          "The share of requests answered 503, from 0 to 1 (POST /stub/config?error-rate=F "
          "changes it).");
ABSL_FLAG(absl::Duration, latency, absl::ZeroDuration(),
          "Added before every answer (POST /stub/config?latency=D changes it).");
ABSL_FLAG(int, threads, 1, "Threads running the event loop, from 1 to 64.");
ABSL_FLAG(uint64_t, seed, 0, "Seed of the --error-rate draws.");

namespace {

using namespace sluice::net;  // NOLINT: the stub is one file of Asio code

constexpr char kUsage[] = R"(usage: sluice-stub --listen HOST:PORT --name NAME [flags]

An upstream for tests, demos and benchmarks; see tools/stub/stub_server.cc for what each
request can ask of it. On start it prints one line to stdout:
  listening http=HOST:PORT name=NAME
)";

sluice::flags::Program FlagsProgram() {
  using sluice::flags::Require;
  sluice::flags::Program program;
  program.name = "sluice-stub";
  program.usage = kUsage;
  program.requirements = {
      Require(FLAGS_error_rate, "a number between 0 and 1",
              [](double r) { return r >= 0 && r <= 1; }),
      Require(FLAGS_latency, "a duration such as 20ms",
              [](absl::Duration d) { return d >= absl::ZeroDuration(); }),
      Require(FLAGS_threads, "a number from 1 to 64", [](int n) { return n >= 1 && n <= 64; }),
  };
  return program;
}

struct Options {
  sluice::HostPort listen{"127.0.0.1", 0};
  std::string name = "stub";
  std::string subset;
  double error_rate = 0;
  absl::Duration latency = absl::ZeroDuration();
  int threads = 1;
  uint64_t seed = 0;
};

// What the instance has seen, and its run-time settings.
class State {
 public:
  explicit State(const Options& o) : name_(o.name), subset_(o.subset), rng_(o.seed) {
    SetErrorRate(o.error_rate);
    latency_ms_ = absl::ToInt64Milliseconds(o.latency);
  }

  uint64_t Count(unsigned status) {
    std::lock_guard<std::mutex> lock(mu_);
    ++by_status_[status];
    return ++received_;
  }
  // Connections that have carried a counted request and are still open (control requests'
  // own connections are not counted): what a proxy's pool holds open here.
  void ConnectionOpened() { ++open_connections_; }
  void ConnectionClosed() { --open_connections_; }
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    received_ = 0;
    by_status_.clear();
  }
  std::string StatsJson() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> statuses;
    for (const auto& [status, n] : by_status_)
      statuses.push_back(absl::StrCat("\"", status, "\":", n));
    return absl::StrCat("{\"name\":\"", name_, "\",\"subset\":\"", subset_,
                        "\",\"received\":", received_, ",\"by_status\":{",
                        absl::StrJoin(statuses, ","), "},\"error_rate\":", error_rate_.load(),
                        ",\"latency_ms\":", latency_ms_.load(),
                        ",\"open_connections\":", open_connections_.load(), "}");
  }
  bool DrawError() {
    const double rate = error_rate_.load();
    if (rate <= 0) return false;
    std::lock_guard<std::mutex> lock(mu_);
    return std::uniform_real_distribution<double>(0, 1)(rng_) < rate;
  }
  void SetErrorRate(double r) { error_rate_ = std::clamp(r, 0.0, 1.0); }
  void SetLatencyMs(int64_t ms) { latency_ms_ = std::max<int64_t>(0, ms); }
  int64_t latency_ms() const { return latency_ms_.load(); }
  const std::string& name() const { return name_; }
  const std::string& subset() const { return subset_; }

 private:
  const std::string name_;
  const std::string subset_;
  std::atomic<double> error_rate_{0};
  std::atomic<int64_t> latency_ms_{0};
  std::mutex mu_;
  std::mt19937_64 rng_;
  uint64_t received_ = 0;
  std::map<unsigned, uint64_t> by_status_;
  std::atomic<int64_t> open_connections_{0};
};

// The value of query parameter `key`, else of header `x-stub-<key>`, else "".
std::string Control(const http::request<http::string_body>& req, absl::string_view key) {
  const absl::string_view target(req.target().data(), req.target().size());
  const size_t q = target.find('?');
  if (q != absl::string_view::npos) {
    for (absl::string_view pair : absl::StrSplit(target.substr(q + 1), '&')) {
      const size_t eq = pair.find('=');
      if (pair.substr(0, eq) == key) {
        return eq == absl::string_view::npos ? "" : std::string(pair.substr(eq + 1));
      }
    }
  }
  const auto header = req.find(absl::StrCat("x-stub-", key));
  return header == req.end() ? "" : std::string(header->value());
}

absl::Duration ParseDurationOr(const std::string& text, absl::Duration fallback) {
  absl::Duration d;
  return !text.empty() && absl::ParseDuration(text, &d) ? d : fallback;
}

// Whether the client closed (or reset) the connection; bytes it sent do not count.
bool PeerClosed(tcp::socket& socket) {
  char byte;
  const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n >= 0) return n == 0;
  return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// Waits `d`, looking every 10ms whether the client closed the connection meanwhile; false
// if it did.
asio::awaitable<bool> SleepUnlessClosed(tcp::socket& socket, absl::Duration d) {
  constexpr absl::Duration kLook = absl::Milliseconds(10);
  if (d <= absl::ZeroDuration()) co_return true;
  const absl::Time until = absl::Now() + d;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    if (PeerClosed(socket)) co_return false;
    const absl::Duration left = until - absl::Now();
    if (left <= absl::ZeroDuration()) co_return true;
    timer.expires_after(absl::ToChronoMicroseconds(std::min(left, kLook)));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

// The status for this attempt: "503,200" answers by x-envoy-attempt-count (1-based).
unsigned PickStatus(const std::string& spec, const http::request<http::string_body>& req) {
  std::vector<std::string> codes = absl::StrSplit(spec, ',', absl::SkipEmpty());
  if (codes.empty()) return 200;
  size_t attempt = 1;
  const auto count = req.find("x-envoy-attempt-count");
  if (count != req.end()) {
    absl::SimpleAtoi(std::string(count->value()), &attempt);
  }
  unsigned status = 200;
  absl::SimpleAtoi(codes[std::min(codes.size(), std::max<size_t>(attempt, 1)) - 1], &status);
  return status < 100 || status > 599 ? 500 : status;
}

asio::awaitable<void> Session(tcp::socket socket, State& state) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  boost::system::error_code ec;
  bool counted_connection = false;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    http::request<http::string_body> req = parser.release();
    const std::string target(req.target());

    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    res.set("x-stub-name", state.name());
    if (!state.subset().empty()) res.set("x-stub-subset", state.subset());

    if (target.rfind("/stub/", 0) == 0) {  // control endpoints, not counted
      if (target.rfind("/stub/reset", 0) == 0) {
        state.Reset();
      } else if (target.rfind("/stub/config", 0) == 0) {
        double rate = 0;
        if (std::string r = Control(req, "error-rate"); absl::SimpleAtod(r, &rate)) {
          state.SetErrorRate(rate);
        }
        if (std::string l = Control(req, "latency"); !l.empty()) {
          state.SetLatencyMs(absl::ToInt64Milliseconds(ParseDurationOr(l, absl::ZeroDuration())));
        }
      }
      res.result(http::status::ok);
      res.set(http::field::content_type, "application/json");
      res.body() = state.StatsJson() + "\n";
      res.prepare_payload();
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !req.keep_alive()) break;
      continue;
    }

    if (!counted_connection) {
      counted_connection = true;
      state.ConnectionOpened();
    }
    if (!co_await SleepUnlessClosed(
            stream.socket(), absl::Milliseconds(state.latency_ms()) +
                                 ParseDurationOr(Control(req, "delay"), absl::ZeroDuration()))) {
      state.Count(0);
      break;  // the client gave up waiting
    }
    const std::string reset = Control(req, "reset");
    const absl::Duration hang = ParseDurationOr(Control(req, "hang"), absl::ZeroDuration());
    unsigned status = PickStatus(Control(req, "status"), req);
    if (state.DrawError()) status = 503;
    const uint64_t count =
        state.Count(reset == "before" || hang > absl::ZeroDuration() ? 0 : status);

    if (reset == "before") break;  // close without a byte of answer
    if (hang > absl::ZeroDuration()) {
      co_await SleepUnlessClosed(stream.socket(), hang);
      break;
    }
    res.result(status);
    res.set("x-stub-count", std::to_string(count));
    size_t body_size = 0;
    if (absl::SimpleAtoi(Control(req, "body"), &body_size)) {
      res.body().assign(body_size, 'x');
    } else {
      res.set(http::field::content_type, "application/json");
      res.body() =
          absl::StrCat("{\"name\":\"", state.name(), "\",\"subset\":\"", state.subset(),
                       "\",\"status\":", status, ",\"method\":\"", std::string(req.method_string()),
                       "\",\"path\":\"", target, "\",\"count\":", count,
                       ",\"request_bytes\":", req.body().size(), "}\n");
    }
    res.prepare_payload();
    if (reset == "after") {
      // Headers promise the whole body; half of it is sent, then the connection closes.
      http::response_serializer<http::string_body> serializer(res);
      co_await http::async_write_header(stream, serializer,
                                        asio::redirect_error(asio::use_awaitable, ec));
      const std::string half = res.body().substr(0, std::max<size_t>(1, res.body().size() / 2));
      co_await asio::async_write(stream.socket(), asio::buffer(half),
                                 asio::redirect_error(asio::use_awaitable, ec));
      break;
    }
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !req.keep_alive()) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream.socket().close(ec);
  if (counted_connection) state.ConnectionClosed();
}

asio::awaitable<void> Accept(tcp::acceptor& acceptor, State& state) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(acceptor.get_executor(), Session(std::move(socket), state), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const sluice::flags::Program program = FlagsProgram();
  if (const std::vector<std::string> extra = sluice::flags::Parse(argc, argv, program);
      !extra.empty()) {
    sluice::flags::UsageError(program, absl::StrCat("unexpected argument \"", extra.front(), "\""));
  }
  Options options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.name = absl::GetFlag(FLAGS_name);
  options.subset = absl::GetFlag(FLAGS_subset);
  options.error_rate = absl::GetFlag(FLAGS_error_rate);
  options.latency = absl::GetFlag(FLAGS_latency);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.seed = absl::GetFlag(FLAGS_seed);
  const sigset_t signals = sluice::BlockTerminationSignals();

  asio::io_context io(options.threads);
  State state(options);
  tcp::acceptor acceptor(io);
  try {
    // Asio takes the address without the brackets HostPort keeps off it.
    const tcp::endpoint endpoint(asio::ip::make_address(options.listen.host), options.listen.port);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const std::exception& e) {
    std::cerr << "sluice-stub: cannot listen on " << options.listen.ToString() << ": " << e.what()
              << "\n";
    return 1;
  }
  std::printf(
      "listening http=%s name=%s\n",
      sluice::HostPort{options.listen.host, acceptor.local_endpoint().port()}.ToString().c_str(),
      options.name.c_str());
  std::fflush(stdout);
  asio::co_spawn(io, Accept(acceptor, state), asio::detached);
  std::vector<std::thread> threads;
  for (int i = 0; i < std::max(1, options.threads); ++i) threads.emplace_back([&] { io.run(); });
  sluice::WaitForTerminationSignal(signals);
  io.stop();
  for (auto& t : threads) t.join();
  return 0;
}
