// Decision-table propagation: how long a configuration change takes to reach every gateway
// worker running with `--decisions local`.
//
//   propagation_bench [--changes N] [--gateways G] [--workers W] [--server PATH]
//                     [--gateway PATH] [--config DIR] [--poll-us US] [--change-timeout-ms MS]
//                     [--timeout-s S]
//
// Starts one sluice-server on a copy of --config (deploy/examples by default) and G
// sluice-gateway processes (gw-0..gw-G-1, W workers each, local decisions), all on loopback
// ports the kernel picks, and waits until ListGateways shows G x W streams that acknowledged
// the server's version. Then, N times: AdminService.Apply of the `reviews` VirtualService
// with its weighted split alternating between 70/30 and 80/20, and ListGateways every
// --poll-us until every stream acknowledged the version Apply returned (at most
// --change-timeout-ms per change). Two figures per change:
//   - propagation_us of each stream, as the server measures it: from its snapshot swap to
//     that worker's acknowledgement (sent right after the worker installed the table);
//   - apply returned -> all acked, as this program sees it (its resolution is the poll
//     interval plus one ListGateways call). The server pushes the table while Apply is still
//     running, so workers often acknowledge before Apply returns; "Apply called -> all acked"
//     (the RPC included) is printed too.
// Prints count, p50, p90, p99 and max in ms of each, and per-stream figures. Every process is
// stopped at the end and on failure (and, through PR_SET_PDEATHSIG, if this program dies).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "sluice/v1/admin.grpc.pb.h"
#include "tests/integration/process.h"

namespace {

using Clock = std::chrono::steady_clock;
using sluice::testing::Process;
using sluice::testing::TempDir;

struct Options {
  int changes = 200;
  int gateways = 4;
  int workers = 2;
  std::string server = SLUICE_SERVER_BINARY;
  std::string gateway = SLUICE_GATEWAY_BINARY;
  std::string config = SLUICE_SOURCE_DIR "/deploy/examples";
  int poll_us = 200;
  int change_timeout_ms = 2000;
  int timeout_s = 300;  // the whole run, start-up included
};

// The `reviews` VirtualService of deploy/examples/bookinfo.yaml with another split.
std::string ReviewsYaml(int v1_weight) {
  return absl::StrFormat(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - name: reviews-jason
    match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - name: reviews-split
    route:
    - destination:
        host: reviews
        subset: v1
      weight: %d
    - destination:
        host: reviews
        subset: v3
      weight: %d
    timeout: 3s
    retries:
      attempts: 2
      perTryTimeout: 1s
      retryOn: 5xx,connect-failure
)",
                         v1_weight, 100 - v1_weight);
}

// Nearest-rank percentile of sorted values.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(p * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

void PrintRow(const std::string& label, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  std::printf("%-34s count=%-5zu p50=%7.3f ms  p90=%7.3f ms  p99=%7.3f ms  max=%7.3f ms\n",
              label.c_str(), ms.size(), Percentile(ms, 0.50), Percentile(ms, 0.90),
              Percentile(ms, 0.99), ms.empty() ? 0.0 : ms.back());
}

bool ListGateways(sluice::v1::AdminService::Stub& admin, sluice::v1::ListGatewaysResponse* out) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return admin.ListGateways(&context, sluice::v1::ListGatewaysRequest(), out).ok();
}

// How many streams of `list` are local-mode and acknowledged `version` or later.
int AckedStreams(const sluice::v1::ListGatewaysResponse& list, uint64_t version) {
  int n = 0;
  for (const sluice::v1::GatewayStream& s : list.streams()) {
    if (s.mode() == sluice::v1::DECISION_MODE_LOCAL && s.table_version_acked() >= version) ++n;
  }
  return n;
}

void PrintStreams(const sluice::v1::ListGatewaysResponse& list) {
  std::fprintf(stderr, "server_version=%llu\n",
               static_cast<unsigned long long>(list.server_version()));
  for (const sluice::v1::GatewayStream& s : list.streams()) {
    std::fprintf(stderr, "  %s peer=%s mode=%d sent=%llu acked=%llu propagation_us=%lld\n",
                 s.name().c_str(), s.peer().c_str(), static_cast<int>(s.mode()),
                 static_cast<unsigned long long>(s.table_version_sent()),
                 static_cast<unsigned long long>(s.table_version_acked()),
                 static_cast<long long>(s.propagation_us()));
  }
}

int Run(const Options& o) {
  const absl::Time give_up = absl::Now() + absl::Seconds(o.timeout_s);
  const int expected = o.gateways * o.workers;

  TempDir dir;
  for (const auto& entry : std::filesystem::directory_iterator(o.config)) {
    if (entry.is_regular_file()) {
      std::filesystem::copy_file(entry.path(),
                                 std::filesystem::path(dir.path()) / entry.path().filename());
    }
  }

  Process server;
  if (!server.Start(
          {o.server, "--plaintext", "--config", dir.path(), "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"},
          "listening ")) {
    std::fprintf(stderr, "sluice-server: %s\n", server.error().c_str());
    return 1;
  }
  const std::string grpc_address = server.Field("grpc");
  std::vector<std::unique_ptr<Process>> gateways;
  for (int g = 0; g < o.gateways; ++g) {
    auto gateway = std::make_unique<Process>();
    if (!gateway->Start({o.gateway, "--plaintext", "--listen", "127.0.0.1:0", "--decision", grpc_address,
                         "--metrics", "127.0.0.1:0", "--workers", std::to_string(o.workers),
                         "--name", absl::StrCat("gw-", g), "--decisions", "local"},
                        "listening ")) {
      std::fprintf(stderr, "gw-%d: %s\n", g, gateway->error().c_str());
      return 1;
    }
    gateways.push_back(std::move(gateway));
  }
  // Stops the gateways first (their streams end), then the server, with a short grace each.
  auto stop_all = [&] {
    for (auto& g : gateways) g->Stop(absl::Seconds(2));
    server.Stop(absl::Seconds(3));
  };

  auto admin = sluice::v1::AdminService::NewStub(
      grpc::CreateChannel(grpc_address, grpc::InsecureChannelCredentials()));
  sluice::v1::ListGatewaysResponse list;
  const absl::Time ready_by = std::min(give_up, absl::Now() + absl::Seconds(20));
  bool ready = false;
  while (absl::Now() < ready_by) {
    if (ListGateways(*admin, &list) && list.streams_size() == expected &&
        AckedStreams(list, list.server_version()) == expected) {
      ready = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (!ready) {
    std::fprintf(stderr, "not every gateway worker acknowledged the server's version:\n");
    PrintStreams(list);
    for (int g = 0; g < o.gateways; ++g) {
      std::fprintf(stderr, "gw-%d log:\n%s\n", g, gateways[g]->Log().c_str());
    }
    stop_all();
    return 1;
  }
  std::printf("sluice-server grpc=%s version=%llu; %d gateways x %d workers (local), %d streams\n",
              grpc_address.c_str(), static_cast<unsigned long long>(list.server_version()),
              o.gateways, o.workers, expected);

  std::vector<double> propagation_ms;  // every stream of every change
  std::vector<double> slowest_ms;      // per change, the slowest stream's propagation
  std::vector<double> all_acked_ms;    // per change, Apply returned -> all acked (bench clock)
  std::vector<double> called_ms;       // per change, Apply called -> all acked (bench clock)
  std::vector<double> apply_ms;        // per change, the Apply RPC
  std::map<std::string, std::vector<double>> per_stream_ms;
  int timeouts = 0, overtaken = 0, unknown = 0;
  uint64_t first_version = 0, last_version = 0;
  int done = 0;
  for (int i = 0; i < o.changes; ++i) {
    if (absl::Now() >= give_up) {
      std::fprintf(stderr, "stopped after %d changes: --timeout-s %d reached\n", i, o.timeout_s);
      break;
    }
    sluice::v1::ApplyRequest request;
    sluice::v1::ApplyFile* file = request.add_files();
    file->set_name("reviews.yaml");
    file->set_yaml(ReviewsYaml(i % 2 == 0 ? 70 : 80));  // the example starts at 80/20
    sluice::v1::ApplyResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    const Clock::time_point apply_start = Clock::now();
    const grpc::Status status = admin->Apply(&context, request, &response);
    const Clock::time_point applied = Clock::now();
    if (!status.ok() || !response.applied()) {
      std::fprintf(stderr, "change %d: Apply failed: %s\n", i,
                   status.ok() ? response.DebugString().c_str() : status.error_message().c_str());
      stop_all();
      return 1;
    }
    const uint64_t version = response.version();
    if (first_version == 0) first_version = version;
    last_version = version;
    apply_ms.push_back(std::chrono::duration<double, std::milli>(applied - apply_start).count());

    const Clock::time_point deadline = applied + std::chrono::milliseconds(o.change_timeout_ms);
    bool all = false;
    Clock::time_point acked_at;
    while (Clock::now() < deadline) {
      absl::SleepFor(absl::Microseconds(o.poll_us));
      if (!ListGateways(*admin, &list)) continue;
      if (list.streams_size() == expected && AckedStreams(list, version) == expected) {
        acked_at = Clock::now();
        all = true;
        break;
      }
    }
    if (!all) {
      ++timeouts;
      std::fprintf(stderr,
                   "change %d (version %llu): not acknowledged by all %d streams in %d ms\n", i,
                   static_cast<unsigned long long>(version), expected, o.change_timeout_ms);
      PrintStreams(list);
      continue;
    }
    ++done;
    all_acked_ms.push_back(std::chrono::duration<double, std::milli>(acked_at - applied).count());
    called_ms.push_back(std::chrono::duration<double, std::milli>(acked_at - apply_start).count());
    double slowest = 0;
    for (const sluice::v1::GatewayStream& s : list.streams()) {
      if (s.table_version_acked() != version) {
        ++overtaken;  // a later version (not ours) was acknowledged: its time is not this one's
        continue;
      }
      if (s.propagation_us() < 0) {
        ++unknown;
        continue;
      }
      const double ms = static_cast<double>(s.propagation_us()) / 1000.0;
      propagation_ms.push_back(ms);
      per_stream_ms[s.name()].push_back(ms);
      slowest = std::max(slowest, ms);
    }
    slowest_ms.push_back(slowest);
  }
  stop_all();

  std::printf("changes: %d requested, %d acknowledged by all %d streams, %d timed out (%d ms)\n",
              o.changes, done, expected, timeouts, o.change_timeout_ms);
  std::printf(
      "versions %llu..%llu; stream figures skipped: %d overtaken by a later version, "
      "%d without a swap time\n",
      static_cast<unsigned long long>(first_version), static_cast<unsigned long long>(last_version),
      overtaken, unknown);
  PrintRow("propagation_us (every stream)", propagation_ms);
  PrintRow("propagation_us (slowest of each)", slowest_ms);
  PrintRow("apply returned -> all acked", all_acked_ms);
  PrintRow("Apply called -> all acked", called_ms);
  PrintRow("Apply RPC", apply_ms);
  for (const auto& [name, ms] : per_stream_ms) PrintRow(absl::StrCat("  ", name), ms);
  return timeouts == 0 && done == o.changes ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", flag.c_str());
      return 2;
    }
    const std::string value = argv[i + 1];
    bool ok = true;
    if (flag == "--changes") {
      ok = absl::SimpleAtoi(value, &o.changes);
    } else if (flag == "--gateways") {
      ok = absl::SimpleAtoi(value, &o.gateways);
    } else if (flag == "--workers") {
      ok = absl::SimpleAtoi(value, &o.workers);
    } else if (flag == "--server") {
      o.server = value;
    } else if (flag == "--gateway") {
      o.gateway = value;
    } else if (flag == "--config") {
      o.config = value;
    } else if (flag == "--poll-us") {
      ok = absl::SimpleAtoi(value, &o.poll_us);
    } else if (flag == "--change-timeout-ms") {
      ok = absl::SimpleAtoi(value, &o.change_timeout_ms);
    } else if (flag == "--timeout-s") {
      ok = absl::SimpleAtoi(value, &o.timeout_s);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: propagation_bench [--changes N] [--gateways G] [--workers W] "
                   "[--server PATH] [--gateway PATH] [--config DIR] [--poll-us US] "
                   "[--change-timeout-ms MS] [--timeout-s S]\n");
      return 2;
    }
  }
  return Run(o);
}
