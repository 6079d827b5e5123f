// libFuzzer target: the gateway's side of the decision stream. The bytes are what the server
// pushes, a sluice.v1.ServerMessage: its decision_table is installed in a LocalDecider (which
// decodes it with lib/routing/table_codec), its endpoint_changes applied, and requests built
// from the table's own hosts, routes and match rules (so that decisions get past host lookup
// and into matching) are decided. A gateway must survive any table a broken or hostile server
// sends: no crash, no sanitizer report, and every FORWARD decision must point inside the
// route table the gateway indexes with it (gateway/worker/session.cc). The same bytes also
// go to DecodeTable as a bare DecisionTable, and a table it accepts must survive being
// encoded and decoded again.

#include <sanitizer/common_interface_defs.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway/decision/local_decider.h"
#include "google/protobuf/stubs/logging.h"
#include "lib/routing/snapshot.h"
#include "lib/routing/snapshot_printer.h"
#include "lib/routing/table_codec.h"
#include "sluice/v1/decision.pb.h"
#include "sluice/v1/table.pb.h"

namespace {

using namespace sluice;  // NOLINT: a fuzz target's one file

// At most this many requests per input, so that big tables do not slow the search down.
constexpr size_t kMaxRequests = 24;

// Said through the sanitizers' report channel, which libFuzzer keeps open under
// -close_fd_mask=2 (the way to run a target whose code logs to stderr).
[[noreturn]] void Fail(const std::string& what) {
  __sanitizer_report_error_summary(
      absl::StrCat("decision_table_fuzzer: invariant broken: ", what).c_str());
  std::abort();
}

// A name that a host pattern matches: "*.example.com" -> "any.example.com", "*" -> "any".
std::string AuthorityFor(const std::string& host) {
  if (host == "*") return "any";
  if (absl::StartsWith(host, "*")) return absl::StrCat("any", host.substr(1));
  return host;
}

// A value that `match` accepts, or a plausible one (regexes are not inverted).
std::string ValueFor(const v1::TableStringMatch& match) {
  switch (match.kind()) {
    case v1::TABLE_STRING_MATCH_KIND_PREFIX:
      return absl::StrCat(match.value(), "x");
    case v1::TABLE_STRING_MATCH_KIND_PRESENT:
      return "x";
    default:
      return match.value();
  }
}

// A request meant to satisfy `match` on host `authority`.
v1::DecideRequest RequestFor(const std::string& authority, const v1::TableMatch& match) {
  v1::DecideRequest request;
  request.set_authority(authority);
  std::string path = match.has_uri() ? ValueFor(match.uri()) : "/";
  if (path.empty() || path[0] != '/') path.insert(0, "/");
  for (const v1::TableNamedStringMatch& q : match.query_params()) {
    absl::StrAppend(&path, absl::StrContains(path, '?') ? "&" : "?", q.name(), "=",
                    ValueFor(q.match()));
  }
  request.set_path(path);
  if (match.has_method()) request.set_method(ValueFor(match.method()));
  if (match.has_scheme()) request.set_scheme(ValueFor(match.scheme()));
  if (match.has_port()) request.set_port(match.port());
  for (const v1::TableNamedStringMatch& h : match.headers()) {
    v1::Header* header = request.add_headers();
    header->set_name(h.name());
    header->set_value(ValueFor(h.match()));
  }
  for (const v1::TableLabel& label : match.source_labels()) {
    (*request.mutable_source_labels())[label.name()] = label.value();
  }
  request.set_source_namespace(match.source_namespace());
  return request;
}

// Requests derived from the table: each host plainly, then one per match block of its
// routes; then whatever the message's own decisions name (strings the fuzzer controls).
std::vector<v1::DecideRequest> RequestsFor(const v1::ServerMessage& message) {
  std::vector<v1::DecideRequest> out;
  const v1::DecisionTable& table = message.decision_table();
  for (const v1::TableVirtualHost& host : table.virtual_hosts()) {
    if (out.size() >= kMaxRequests) break;
    const std::string authority = AuthorityFor(host.name());
    v1::DecideRequest plain;
    plain.set_authority(authority);
    plain.set_path("/");
    out.push_back(std::move(plain));
    for (const v1::TableRoute& route : host.routes()) {
      for (const v1::TableMatch& match : route.matches()) {
        if (out.size() >= kMaxRequests) break;
        out.push_back(RequestFor(authority, match));
      }
    }
  }
  for (const v1::Decision& d : message.decisions()) {
    if (out.size() >= kMaxRequests + 4) break;
    v1::DecideRequest request;
    request.set_authority(d.authority());
    request.set_path(d.path());
    request.set_method(d.location());
    request.set_port(d.status());
    out.push_back(std::move(request));
  }
  return out;
}

// What the gateway indexes with a FORWARD decision must exist in the route table.
void CheckAnswer(const gateway::DecisionAnswer& answer, const gateway::LocalDecider& decider) {
  const v1::Decision& d = answer.decision;
  if (answer.table != decider.route_table()) Fail("the answer's table is not the installed one");
  if (d.config_version() != decider.version()) Fail("the decision names another version");
  if (d.action() != v1::FORWARD) return;
  const v1::RouteTable& table = *answer.table;
  if (d.has_mirror()) {
    if (d.mirror().cluster_id() >= static_cast<uint32_t>(table.clusters_size()) ||
        d.mirror().endpoint_index() >=
            static_cast<uint32_t>(table.clusters(d.mirror().cluster_id()).endpoints_size())) {
      Fail(absl::StrCat("mirror ", d.mirror().ShortDebugString(), " outside the table"));
    }
  }
  // An injected abort is answered without an upstream.
  if (d.fault().abort_http_status() != 0 || !d.fault().abort_grpc_status().empty()) return;
  if (d.route_id() >= static_cast<uint32_t>(table.routes_size())) {
    Fail(absl::StrCat("route_id ", d.route_id(), " of ", table.routes_size(), " routes"));
  }
  if (d.cluster_id() >= static_cast<uint32_t>(table.clusters_size())) {
    Fail(absl::StrCat("cluster_id ", d.cluster_id(), " of ", table.clusters_size(), " clusters"));
  }
  const v1::ClusterInfo& cluster = table.clusters(d.cluster_id());
  if (cluster.id() != d.cluster_id()) Fail("the cluster at cluster_id has another id");
  if (d.endpoint_index() >= static_cast<uint32_t>(cluster.endpoints_size())) {
    Fail(absl::StrCat("endpoint_index ", d.endpoint_index(), " of ", cluster.endpoints_size(),
                      " endpoints in ", cluster.name()));
  }
  for (const uint32_t alternate : d.alternate_indexes()) {
    if (alternate >= static_cast<uint32_t>(cluster.endpoints_size())) {
      Fail(absl::StrCat("alternate ", alternate, " of ", cluster.endpoints_size(), " endpoints in ",
                        cluster.name()));
    }
  }
}

void DecideAll(gateway::LocalDecider& decider, const std::vector<v1::DecideRequest>& requests,
               uint64_t& next_id) {
  for (v1::DecideRequest request : requests) {
    request.set_id(++next_id);
    std::optional<v1::AttemptReport> no_healthy;
    const gateway::DecisionAnswer answer = decider.Decide(request, &no_healthy);
    CheckAnswer(answer, decider);
    // Every other decision's attempt is reported at once, the rest stay outstanding.
    if (next_id % 2 == 0) decider.OnReport(next_id);
  }
}

// A table the decoder accepts, the server's encoder writes back in a form it accepts again
// (the server encodes what it compiled; a gateway decodes that).
void CheckRoundTrip(const v1::DecisionTable& table) {
  absl::StatusOr<std::shared_ptr<const routing::Snapshot>> snapshot =
      routing::DecodeTable(table, nullptr);
  if (!snapshot.ok()) return;
  (void)routing::DescribeSnapshot(**snapshot);
  v1::DecisionTable again;
  routing::EncodeTable(**snapshot, again);
  absl::StatusOr<std::shared_ptr<const routing::Snapshot>> decoded =
      routing::DecodeTable(again, nullptr);
  if (!decoded.ok()) {
    Fail(absl::StrCat("a decoded table, encoded again, does not decode: ",
                      decoded.status().ToString()));
  }
}

}  // namespace

// protobuf logs every string it refuses as not UTF-8: noise at thousands of inputs a second.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  // The bytes as a bare DecisionTable, straight to the decoder.
  if (v1::DecisionTable bare; bare.ParseFromString(bytes)) CheckRoundTrip(bare);

  v1::ServerMessage message;
  if (!message.ParseFromString(bytes)) return 0;
  // Decisions are random draws: seeded from the input, so that a crash reproduces.
  std::mt19937_64 rng(std::hash<std::string>()(bytes));
  gateway::LocalDecider decider(rng);
  if (!message.has_decision_table() || !decider.Install(message.decision_table()).ok()) return 0;
  CheckRoundTrip(message.decision_table());
  const std::vector<v1::DecideRequest> requests = RequestsFor(message);
  uint64_t next_id = 0;
  DecideAll(decider, requests, next_id);
  for (const v1::EndpointChange& change : message.endpoint_changes()) decider.Apply(change);
  DecideAll(decider, requests, next_id);
  // The next version's table arrives while decisions are outstanding: here, the same one.
  if (!decider.Install(message.decision_table()).ok()) Fail("a table installed once is refused");
  DecideAll(decider, requests, next_id);
  return 0;
}
