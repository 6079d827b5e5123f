// gRPC load client: drives sluice-server's Decide / Stream or the echo server's Unary /
// Stream for a bounded time with a fixed number of requests in flight, and reports
// throughput, latency percentiles and the server's CPU per request (from /proc).
//
//   grpc_load --target HOST:PORT --mode MODE --inflight N --seconds S --server-pid PID
//   MODE: decide-unary | echo-unary | decide-stream | decide-stream-reports | echo-stream
//
// Unary modes run N threads of blocking calls. Stream modes keep N requests outstanding on
// one stream; decide-stream sends every free slot's request in one message (the coalescing
// a gateway worker does within one event-loop turn); echo-stream sends one empty message
// per request, the per-message baseline. decide-stream-reports also sends, with the next
// message, an attempt report (a 200) for every decision received, as a gateway does: the
// server then also runs outlier detection and success-rate accounting for each request
// (reviews has an outlierDetection block in deploy/examples).

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "echo.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "sluice/v1/decision.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string target;
  std::string mode;
  int inflight = 8;
  double seconds = 5;
  double warmup = 1;
  int server_pid = 0;
};

// utime + stime of a process, in seconds.
double ProcessCpuSeconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields;
  std::string field;
  for (char c : stat.substr(close + 2)) {
    if (c == ' ') {
      fields.push_back(field);
      field.clear();
    } else {
      field += c;
    }
  }
  // After "pid (comm) ", fields start at state (field 3); utime is 14, stime 15.
  double utime = 0, stime = 0;
  absl::SimpleAtod(fields.at(11), &utime);
  absl::SimpleAtod(fields.at(12), &stime);
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

sluice::v1::DecideRequest Request(uint64_t id) {
  sluice::v1::DecideRequest r;
  r.set_id(id);
  r.set_authority("reviews:9080");
  r.set_method("GET");
  r.set_path("/reviews/1");
  sluice::v1::Header* h = r.add_headers();
  h->set_name("end-user");
  h->set_value(id % 8 == 0 ? "jason" : "alice");
  return r;
}

// Latencies of requests completed in the measured window.
struct Recorder {
  std::mutex mu;
  std::vector<double> latencies_us;
  std::atomic<bool> measuring{false};
  void Add(double us) {
    if (!measuring.load(std::memory_order_relaxed)) return;
    std::lock_guard<std::mutex> lock(mu);
    latencies_us.push_back(us);
  }
};

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

void RunUnary(const Options& o, const std::shared_ptr<grpc::Channel>& channel, Recorder& rec,
              std::atomic<bool>& stop) {
  std::vector<std::thread> threads;
  for (int t = 0; t < o.inflight; ++t) {
    threads.emplace_back([&, t] {
      auto decide = sluice::v1::DecisionService::NewStub(channel);
      auto echo = sluice::bench::Echo::NewStub(channel);
      uint64_t id = static_cast<uint64_t>(t) << 40;
      while (!stop.load()) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        const Clock::time_point start = Clock::now();
        grpc::Status s;
        if (o.mode == "decide-unary") {
          sluice::v1::Decision d;
          s = decide->Decide(&ctx, Request(++id), &d);
        } else {
          sluice::bench::EchoMessage in, out;
          s = echo->Unary(&ctx, in, &out);
        }
        if (s.ok()) rec.Add(Micros(Clock::now() - start));
      }
    });
  }
  for (auto& t : threads) t.join();
}

void RunStream(const Options& o, const std::shared_ptr<grpc::Channel>& channel, Recorder& rec,
               std::atomic<bool>& stop) {
  std::mutex mu;
  std::condition_variable cv;
  int outstanding = 0;
  absl::flat_hash_map<uint64_t, Clock::time_point> sent_at;  // decide: by id
  std::deque<Clock::time_point> fifo;                        // echo: in order
  grpc::ClientContext ctx;
  const bool decide = o.mode == "decide-stream" || o.mode == "decide-stream-reports";
  const bool reports = o.mode == "decide-stream-reports";
  std::vector<sluice::v1::AttemptReport> pending_reports;  // guarded by mu
  auto decide_stub = sluice::v1::DecisionService::NewStub(channel);
  auto echo_stub = sluice::bench::Echo::NewStub(channel);
  auto decide_stream = decide ? decide_stub->Stream(&ctx) : nullptr;
  auto echo_stream = decide ? nullptr : echo_stub->Stream(&ctx);

  std::thread reader([&] {
    if (decide) {
      sluice::v1::ServerMessage in;
      while (decide_stream->Read(&in)) {
        const Clock::time_point now = Clock::now();
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& d : in.decisions()) {
          auto it = sent_at.find(d.id());
          if (it == sent_at.end()) continue;
          rec.Add(Micros(now - it->second));
          sent_at.erase(it);
          --outstanding;
          if (reports && d.action() == sluice::v1::FORWARD) {
            sluice::v1::AttemptReport& r = pending_reports.emplace_back();
            r.set_id(d.id());
            r.set_config_version(d.config_version());
            r.set_cluster_id(d.cluster_id());
            r.set_endpoint_index(d.endpoint_index());
            r.set_attempt(1);
            r.set_outcome(sluice::v1::RESPONSE);
            r.set_status_code(200);
            r.set_latency_us(1000);
            r.set_final(true);
          }
        }
        cv.notify_one();
      }
    } else {
      sluice::bench::EchoMessage in;
      while (echo_stream->Read(&in)) {
        const Clock::time_point now = Clock::now();
        std::lock_guard<std::mutex> lock(mu);
        rec.Add(Micros(now - fifo.front()));
        fifo.pop_front();
        --outstanding;
        cv.notify_one();
      }
    }
  });

  uint64_t next_id = 0;
  while (!stop.load()) {
    int free_slots;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return outstanding < o.inflight; });
      free_slots = o.inflight - outstanding;
      if (free_slots <= 0) continue;
      outstanding += free_slots;
    }
    const Clock::time_point now = Clock::now();
    if (decide) {
      sluice::v1::GatewayMessage msg;
      {
        std::lock_guard<std::mutex> lock(mu);
        for (int i = 0; i < free_slots; ++i) {
          *msg.add_decide() = Request(++next_id);
          sent_at[next_id] = now;
        }
        for (sluice::v1::AttemptReport& r : pending_reports) *msg.add_reports() = std::move(r);
        pending_reports.clear();
      }
      if (!decide_stream->Write(msg)) break;
    } else {
      for (int i = 0; i < free_slots; ++i) {
        {
          std::lock_guard<std::mutex> lock(mu);
          fifo.push_back(Clock::now());
        }
        if (!echo_stream->Write(sluice::bench::EchoMessage())) break;
      }
    }
  }
  if (decide) {
    decide_stream->WritesDone();
  } else {
    echo_stream->WritesDone();
  }
  reader.join();
  if (decide) {
    decide_stream->Finish();
  } else {
    echo_stream->Finish();
  }
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = static_cast<size_t>(p * (v.size() - 1));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--target")
      o.target = value;
    else if (flag == "--mode")
      o.mode = value;
    else if (flag == "--inflight")
      absl::SimpleAtoi(value, &o.inflight);
    else if (flag == "--seconds")
      absl::SimpleAtod(value, &o.seconds);
    else if (flag == "--warmup")
      absl::SimpleAtod(value, &o.warmup);
    else if (flag == "--server-pid")
      absl::SimpleAtoi(value, &o.server_pid);
  }
  if (o.target.empty() || o.mode.empty() || o.server_pid == 0) {
    std::fprintf(stderr,
                 "usage: grpc_load --target HOST:PORT --mode MODE --inflight N "
                 "--seconds S --server-pid PID\n");
    return 2;
  }
  auto channel = grpc::CreateChannel(o.target, grpc::InsecureChannelCredentials());
  Recorder rec;
  std::atomic<bool> stop{false};
  const bool stream = o.mode.find("stream") != std::string::npos;
  std::thread load(
      [&] { stream ? RunStream(o, channel, rec, stop) : RunUnary(o, channel, rec, stop); });

  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));
  const double cpu_start = ProcessCpuSeconds(o.server_pid);
  const Clock::time_point start = Clock::now();
  rec.measuring = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  rec.measuring = false;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = ProcessCpuSeconds(o.server_pid) - cpu_start;
  stop = true;
  load.join();

  std::vector<double> lat;
  {
    std::lock_guard<std::mutex> lock(rec.mu);
    lat = rec.latencies_us;
  }
  const size_t n = lat.size();
  std::printf(
      "mode=%s inflight=%d requests=%zu rate=%.0f p50_us=%.1f p99_us=%.1f "
      "server_cpu_us_per_request=%.2f\n",
      o.mode.c_str(), o.inflight, n, n / elapsed, Percentile(lat, 0.50), Percentile(lat, 0.99),
      n > 0 ? 1e6 * cpu / n : 0.0);
  return n > 0 ? 0 : 1;
}
