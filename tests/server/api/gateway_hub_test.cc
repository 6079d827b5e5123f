// Tests for the gateway hub (server/api/gateway_hub.cc) with fake streams and clocks: every
// stream gets each version's decision table and each endpoint health change in order, a
// stream that connects later catches up, and ListGateways reports what each acknowledged.

#include "server/api/gateway_hub.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/routing/snapshot.h"
#include "server/config/loader.h"
#include "server/routing/snapshot_compiler.h"
#include "sluice/v1/admin.pb.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::api {
namespace {

using ::testing::ElementsAre;

constexpr char kConfig[] = R"yaml(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  ports: [{number: 8080, name: http}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 18081}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 18082}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - route:
    - destination: {host: shop, subset: v1}
)yaml";

constexpr char kCluster[] = "outbound|8080|v1|shop";

std::shared_ptr<const routing::Snapshot> Compile(uint64_t version) {
  config::LoadResult loaded = config::LoadText(kConfig, "config.yaml");
  if (!loaded.ok()) {
    ADD_FAILURE() << loaded.diagnostics.ToString();
    return nullptr;
  }
  absl::StatusOr<std::shared_ptr<const routing::Snapshot>> snapshot =
      routing::CompileSnapshot(std::move(loaded.config), version);
  if (!snapshot.ok()) {
    ADD_FAILURE() << snapshot.status();
    return nullptr;
  }
  return *std::move(snapshot);
}

// Records what the hub pushes. Thread-safe: the keepalive thread pushes too.
class FakeStream final : public GatewayHub::Stream {
 public:
  void Push(v1::ServerMessage message) override {
    absl::MutexLock lock(&mu_);
    messages_.push_back(std::move(message));
  }

  std::vector<v1::ServerMessage> messages() const {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  size_t size() const {
    absl::MutexLock lock(&mu_);
    return messages_.size();
  }
  void Clear() {
    absl::MutexLock lock(&mu_);
    messages_.clear();
  }

  // One line per message: "table N", "changes c/e=ejected c/e=returned", "keepalive".
  std::vector<std::string> Summary() const {
    std::vector<std::string> out;
    for (const v1::ServerMessage& m : messages()) {
      std::string line;
      if (m.has_decision_table()) line = absl::StrCat("table ", m.decision_table().version());
      if (m.endpoint_changes_size() > 0) {
        absl::StrAppend(&line, line.empty() ? "" : " ", "changes");
        for (const v1::EndpointChange& c : m.endpoint_changes()) {
          absl::StrAppend(&line, " ", c.endpoint(), c.ejected() ? "=ejected" : "=returned");
        }
      }
      if (m.keepalive()) absl::StrAppend(&line, line.empty() ? "" : " ", "keepalive");
      out.push_back(line);
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::ServerMessage> messages_;
};

v1::TableAck Ack(uint64_t version, uint64_t changes = 0) {
  v1::TableAck ack;
  ack.set_table_version(version);
  ack.set_endpoint_changes(changes);
  return ack;
}

class GatewayHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (uint64_t v = 1; v <= 3; ++v) {
      snapshots_.push_back(Compile(v));
      ASSERT_NE(snapshots_.back(), nullptr);
    }
  }

  const routing::Snapshot& Snapshot(uint64_t version) const { return *snapshots_[version - 1]; }

  const v1::GatewayStream* Find(const v1::ListGatewaysResponse& list, const std::string& name) {
    for (const v1::GatewayStream& s : list.streams()) {
      if (s.name() == name) return &s;
    }
    ADD_FAILURE() << "no stream " << name;
    return nullptr;
  }

  absl::Duration monotonic_ = absl::Seconds(1000);
  absl::Time wall_ = absl::FromUnixMillis(1'700'000'000'000);
  GatewayHub hub_{[this] { return monotonic_; }, [this] { return wall_; }};
  std::vector<std::shared_ptr<const routing::Snapshot>> snapshots_;
};

TEST_F(GatewayHubTest, ARegisteredStreamGetsTheCurrentTable) {
  FakeStream early;
  const uint64_t early_id =
      hub_.Register(&early, "gw/0", "ipv4:127.0.0.1:1", v1::DECISION_MODE_LOCAL);
  EXPECT_NE(early_id, 0u);
  EXPECT_EQ(early.size(), 0u) << "no table yet: nothing to send";

  hub_.OnSnapshot(Snapshot(1));
  EXPECT_THAT(early.Summary(), ElementsAre("table 1"));

  FakeStream late;
  const uint64_t late_id =
      hub_.Register(&late, "gw/1", "ipv4:127.0.0.1:2", v1::DECISION_MODE_SERVER);
  EXPECT_NE(late_id, early_id);
  ASSERT_THAT(late.Summary(), ElementsAre("table 1"));
  const v1::DecisionTable table = late.messages()[0].decision_table();
  EXPECT_EQ(table.version(), 1u);
  EXPECT_GT(table.clusters_size(), 0);
  EXPECT_GT(table.virtual_hosts_size(), 0);

  const v1::ListGatewaysResponse list = hub_.List();
  EXPECT_EQ(list.server_version(), 1u);
  ASSERT_EQ(list.streams_size(), 2);
  for (const v1::GatewayStream& s : list.streams()) {
    EXPECT_EQ(s.table_version_sent(), 1u) << s.name();
    EXPECT_EQ(s.table_version_acked(), 0u) << s.name();
    EXPECT_EQ(s.connected_unix_ms(), 1'700'000'000'000) << s.name();
  }
}

TEST_F(GatewayHubTest, EveryStreamGetsEachNewTableInOrder) {
  hub_.OnSnapshot(Snapshot(1));
  FakeStream a, b;
  hub_.Register(&a, "gw-a/0", "peer-a", v1::DECISION_MODE_LOCAL);
  hub_.Register(&b, "gw-b/0", "peer-b", v1::DECISION_MODE_SERVER);
  hub_.OnSnapshot(Snapshot(2));
  hub_.OnSnapshot(Snapshot(3));
  EXPECT_THAT(a.Summary(), ElementsAre("table 1", "table 2", "table 3"));
  EXPECT_THAT(b.Summary(), ElementsAre("table 1", "table 2", "table 3"));
  const v1::ListGatewaysResponse list = hub_.List();
  EXPECT_EQ(list.server_version(), 3u);
  for (const v1::GatewayStream& s : list.streams()) EXPECT_EQ(s.table_version_sent(), 3u);
}

TEST_F(GatewayHubTest, HealthChangesArePushedToAllAndLateStreamsGetTheLatestState) {
  hub_.OnSnapshot(Snapshot(1));
  FakeStream a, b;
  const uint64_t a_id = hub_.Register(&a, "gw-a/0", "peer-a", v1::DECISION_MODE_LOCAL);
  hub_.Register(&b, "gw-b/0", "peer-b", v1::DECISION_MODE_SERVER);
  hub_.OnEjected(kCluster, "127.0.0.1:18081", health::EjectionReason{}, 1, absl::Seconds(30));
  hub_.OnEjected(kCluster, "127.0.0.1:18082", health::EjectionReason{}, 1, absl::Seconds(30));
  hub_.OnReturned(kCluster, "127.0.0.1:18081", absl::Seconds(30));
  const std::vector<std::string> expected = {"table 1", "changes 127.0.0.1:18081=ejected",
                                             "changes 127.0.0.1:18082=ejected",
                                             "changes 127.0.0.1:18081=returned"};
  EXPECT_EQ(a.Summary(), expected);
  EXPECT_EQ(b.Summary(), expected);
  const v1::EndpointChange first = a.messages()[1].endpoint_changes(0);
  EXPECT_EQ(first.cluster(), kCluster);

  // A stream connecting now: the table, then one message with each endpoint's latest state
  // (18081 was ejected and returned: only its return, after 18082's ejection).
  FakeStream late;
  const uint64_t late_id = hub_.Register(&late, "gw-c/0", "peer-c", v1::DECISION_MODE_LOCAL);
  EXPECT_THAT(late.Summary(),
              ElementsAre("table 1", "changes 127.0.0.1:18082=ejected 127.0.0.1:18081=returned"));

  v1::ListGatewaysResponse list = hub_.List();
  EXPECT_EQ(Find(list, "gw-a/0")->endpoint_changes_sent(), 3u);
  EXPECT_EQ(Find(list, "gw-c/0")->endpoint_changes_sent(), 2u);

  // Acknowledgements count the changes each stream applied.
  hub_.OnAck(a_id, Ack(1, 3));
  hub_.OnAck(late_id, Ack(1, 2));
  list = hub_.List();
  EXPECT_EQ(Find(list, "gw-a/0")->endpoint_changes_acked(), 3u);
  EXPECT_EQ(Find(list, "gw-b/0")->endpoint_changes_acked(), 0u);
  EXPECT_EQ(Find(list, "gw-c/0")->endpoint_changes_acked(), 2u);

  // A new table carries the health it was encoded with: later streams get no old changes.
  hub_.OnSnapshot(Snapshot(2));
  FakeStream later;
  hub_.Register(&later, "gw-d/0", "peer-d", v1::DECISION_MODE_LOCAL);
  EXPECT_THAT(later.Summary(), ElementsAre("table 2"));
  EXPECT_EQ(a.Summary().back(), "table 2");
  // Counts stay per stream (the gateway counts every change its stream brought).
  list = hub_.List();
  EXPECT_EQ(Find(list, "gw-a/0")->endpoint_changes_sent(), 3u);
  EXPECT_EQ(Find(list, "gw-d/0")->endpoint_changes_sent(), 0u);
}

TEST_F(GatewayHubTest, AcknowledgementsRecordVersionAndPropagationTime) {
  FakeStream a, b;
  const uint64_t a_id = hub_.Register(&a, "gw-a/0", "peer-a", v1::DECISION_MODE_LOCAL);
  const uint64_t b_id = hub_.Register(&b, "gw-b/0", "peer-b", v1::DECISION_MODE_SERVER);
  hub_.OnSnapshot(Snapshot(1));
  monotonic_ += absl::Microseconds(1234);
  hub_.OnAck(a_id, Ack(1));
  monotonic_ += absl::Milliseconds(5);
  hub_.OnAck(b_id, Ack(1));

  v1::ListGatewaysResponse list = hub_.List();
  EXPECT_EQ(Find(list, "gw-a/0")->table_version_acked(), 1u);
  EXPECT_EQ(Find(list, "gw-a/0")->propagation_us(), 1234);
  EXPECT_EQ(Find(list, "gw-b/0")->propagation_us(), 6234);

  // Acknowledging the same version again (after a change) keeps the first figure.
  monotonic_ += absl::Seconds(1);
  hub_.OnAck(a_id, Ack(1, 1));
  list = hub_.List();
  EXPECT_EQ(Find(list, "gw-a/0")->propagation_us(), 1234);
  EXPECT_EQ(Find(list, "gw-a/0")->endpoint_changes_acked(), 1u);

  // Version 2: measured from its own swap.
  hub_.OnSnapshot(Snapshot(2));
  monotonic_ += absl::Milliseconds(40);
  hub_.OnAck(a_id, Ack(2, 1));
  list = hub_.List();
  EXPECT_EQ(Find(list, "gw-a/0")->table_version_acked(), 2u);
  EXPECT_EQ(Find(list, "gw-a/0")->propagation_us(), 40'000);
  EXPECT_EQ(Find(list, "gw-b/0")->table_version_acked(), 1u);
  EXPECT_EQ(Find(list, "gw-b/0")->table_version_sent(), 2u);

  // A version the hub never swapped to: unknown.
  hub_.OnAck(b_id, Ack(77));
  EXPECT_EQ(Find(hub_.List(), "gw-b/0")->propagation_us(), -1);

  // Unknown stream ids are ignored.
  hub_.OnAck(12345, Ack(2));
  EXPECT_EQ(hub_.List().streams_size(), 2);
}

TEST_F(GatewayHubTest, PropagationOfOldVersionsIsForgotten) {
  FakeStream a;
  const uint64_t id = hub_.Register(&a, "gw-a/0", "peer-a", v1::DECISION_MODE_LOCAL);
  hub_.OnSnapshot(Snapshot(1));
  // Versions 2..17 reuse snapshot 2's content; only the version number matters here.
  for (uint64_t v = 2; v <= 17; ++v) {
    auto loaded = config::LoadText(kConfig, "config.yaml");
    auto s = routing::CompileSnapshot(std::move(loaded.config), v);
    ASSERT_TRUE(s.ok());
    hub_.OnSnapshot(**s);
  }
  monotonic_ += absl::Milliseconds(3);
  hub_.OnAck(id, Ack(1));
  EXPECT_EQ(Find(hub_.List(), "gw-a/0")->propagation_us(), -1);
  hub_.OnAck(id, Ack(17));
  EXPECT_EQ(Find(hub_.List(), "gw-a/0")->propagation_us(), 3000);
}

TEST_F(GatewayHubTest, UnregisteredStreamsGetNothingMore) {
  hub_.OnSnapshot(Snapshot(1));
  FakeStream a, b;
  const uint64_t a_id = hub_.Register(&a, "gw-a/0", "peer-a", v1::DECISION_MODE_LOCAL);
  hub_.Register(&b, "gw-b/0", "peer-b", v1::DECISION_MODE_LOCAL);
  hub_.Unregister(a_id);
  hub_.OnSnapshot(Snapshot(2));
  hub_.OnEjected(kCluster, "127.0.0.1:18081", health::EjectionReason{}, 1, absl::Seconds(30));
  hub_.SendKeepalives();
  EXPECT_THAT(a.Summary(), ElementsAre("table 1"));
  EXPECT_THAT(b.Summary(),
              ElementsAre("table 1", "table 2", "changes 127.0.0.1:18081=ejected", "keepalive"));
  const v1::ListGatewaysResponse list = hub_.List();
  ASSERT_EQ(list.streams_size(), 1);
  EXPECT_EQ(list.streams(0).name(), "gw-b/0");
  // Acks and traffic of a gone stream are ignored.
  hub_.OnAck(a_id, Ack(2));
  hub_.OnTraffic(a_id, 5, 5);
  hub_.Unregister(a_id);
  EXPECT_EQ(hub_.List().streams_size(), 1);
}

TEST_F(GatewayHubTest, KeepalivesGoToEveryStream) {
  FakeStream a, b;
  hub_.Register(&a, "gw-a/0", "peer-a", v1::DECISION_MODE_LOCAL);
  hub_.Register(&b, "gw-b/0", "peer-b", v1::DECISION_MODE_SERVER);
  hub_.SendKeepalives();
  hub_.SendKeepalives();
  for (FakeStream* s : {&a, &b}) {
    ASSERT_THAT(s->Summary(), ElementsAre("keepalive", "keepalive"));
    EXPECT_FALSE(s->messages()[0].has_decision_table());
    EXPECT_EQ(s->messages()[0].endpoint_changes_size(), 0);
  }
}

TEST_F(GatewayHubTest, TheKeepaliveThreadSendsUntilStopped) {
  FakeStream a;
  hub_.Register(&a, "gw-a/0", "peer-a", v1::DECISION_MODE_LOCAL);
  hub_.Start(absl::Milliseconds(5));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (a.size() < 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  hub_.Stop();
  ASSERT_GE(a.size(), 2u);
  const size_t after_stop = a.size();
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_EQ(a.size(), after_stop);
  for (const std::string& line : a.Summary()) EXPECT_EQ(line, "keepalive");
  hub_.Stop();  // twice is fine
}

TEST_F(GatewayHubTest, ListIsSortedByNameWithModesAndTraffic) {
  hub_.OnSnapshot(Snapshot(1));
  FakeStream s1, s2, s3, s4;
  const uint64_t b1 = hub_.Register(&s1, "gw-b/1", "peer-4", v1::DECISION_MODE_SERVER);
  const uint64_t a0 = hub_.Register(&s2, "gw-a/0", "peer-2", v1::DECISION_MODE_LOCAL);
  hub_.Register(&s3, "gw-b/0", "peer-3", v1::DECISION_MODE_UNSPECIFIED);
  hub_.Register(&s4, "gw-a/1", "peer-1", v1::DECISION_MODE_LOCAL);

  hub_.OnTraffic(b1, 10, 0);
  wall_ += absl::Seconds(2);
  hub_.OnTraffic(b1, 5, 7);
  wall_ += absl::Seconds(3);
  hub_.OnTraffic(a0, 0, 4);
  hub_.OnTraffic(a0, 0, 0);  // nothing: the last report time stays
  wall_ += absl::Seconds(1);
  hub_.OnTraffic(a0, 0, 0);

  const v1::ListGatewaysResponse list = hub_.List();
  EXPECT_EQ(list.server_version(), 1u);
  std::vector<std::string> names, modes;
  for (const v1::GatewayStream& s : list.streams()) {
    names.push_back(s.name());
    modes.push_back(v1::DecisionMode_Name(s.mode()));
  }
  EXPECT_THAT(names, ElementsAre("gw-a/0", "gw-a/1", "gw-b/0", "gw-b/1"));
  // An unspecified mode is the server mode.
  EXPECT_THAT(modes, ElementsAre("DECISION_MODE_LOCAL", "DECISION_MODE_LOCAL",
                                 "DECISION_MODE_SERVER", "DECISION_MODE_SERVER"));
  EXPECT_EQ(list.streams(0).peer(), "peer-2");

  const v1::GatewayStream& b = list.streams(3);
  EXPECT_EQ(b.decisions(), 15u);
  EXPECT_EQ(b.reports(), 7u);
  EXPECT_EQ(b.last_report_unix_ms(), 1'700'000'002'000);
  const v1::GatewayStream& a = list.streams(0);
  EXPECT_EQ(a.decisions(), 0u);
  EXPECT_EQ(a.reports(), 4u);
  EXPECT_EQ(a.last_report_unix_ms(), 1'700'000'005'000);
  const v1::GatewayStream& quiet = list.streams(1);
  EXPECT_EQ(quiet.reports(), 0u);
  EXPECT_EQ(quiet.last_report_unix_ms(), 0);
}

TEST_F(GatewayHubTest, StreamsOfTheSameNameAreOrderedByPeer) {
  FakeStream s1, s2;
  hub_.Register(&s1, "gw/0", "peer-b", v1::DECISION_MODE_LOCAL);
  hub_.Register(&s2, "gw/0", "peer-a", v1::DECISION_MODE_LOCAL);
  const v1::ListGatewaysResponse list = hub_.List();
  ASSERT_EQ(list.streams_size(), 2);
  EXPECT_EQ(list.streams(0).peer(), "peer-a");
  EXPECT_EQ(list.streams(1).peer(), "peer-b");
}

}  // namespace
}  // namespace sluice::api
