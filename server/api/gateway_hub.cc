#include "server/api/gateway_hub.h"

#include <algorithm>
#include <utility>

#include "lib/routing/table_codec.h"

namespace sluice::api {
namespace {

// Versions whose swap time is kept: a gateway acknowledging an older one is far behind, and
// its propagation time is not a figure anybody needs.
constexpr size_t kSwapTimesKept = 16;

int64_t UnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }

}  // namespace

GatewayHub::GatewayHub(MonotonicClock monotonic, WallClock wall)
    : monotonic_(std::move(monotonic)), wall_(std::move(wall)) {}

GatewayHub::~GatewayHub() { Stop(); }

void GatewayHub::OnSnapshot(const routing::Snapshot& snapshot) {
  // Encoded once for all streams. Endpoint health is read while the hub's lock is held, so a
  // change told after this point is pushed after this table (and a change told before it is
  // already in it): every gateway ends with the server's state.
  const absl::Duration swapped = monotonic_();  // propagation counts the encoding too
  auto table = std::make_shared<v1::DecisionTable>();
  absl::MutexLock lock(&mu_);
  routing::EncodeTable(snapshot, *table);
  table_ = std::move(table);
  changes_since_table_.clear();
  server_version_ = snapshot.version();
  swapped_at_.emplace_back(snapshot.version(), swapped);
  while (swapped_at_.size() > kSwapTimesKept) swapped_at_.pop_front();
  for (auto& [id, entry] : streams_) SendTableLocked(entry);
}

void GatewayHub::SendTableLocked(Entry& entry) {
  if (table_ == nullptr) return;
  v1::ServerMessage message;
  *message.mutable_decision_table() = *table_;
  entry.info.set_table_version_sent(table_->version());
  entry.table_sent_at = monotonic_();
  entry.stream->Push(std::move(message));
}

uint64_t GatewayHub::Register(Stream* stream, std::string name, std::string peer,
                              v1::DecisionMode mode) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = ++next_id_;
  Entry& entry = streams_[id];
  entry.stream = stream;
  entry.info.set_name(std::move(name));
  entry.info.set_peer(std::move(peer));
  entry.info.set_mode(mode == v1::DECISION_MODE_UNSPECIFIED ? v1::DECISION_MODE_SERVER : mode);
  entry.info.set_connected_unix_ms(UnixMillis(wall_()));
  entry.info.set_propagation_us(-1);  // unknown until the first acknowledgement
  SendTableLocked(entry);
  if (!changes_since_table_.empty()) {
    v1::ServerMessage changes;
    for (const v1::EndpointChange& c : changes_since_table_) *changes.add_endpoint_changes() = c;
    entry.info.set_endpoint_changes_sent(changes_since_table_.size());
    stream->Push(std::move(changes));
  }
  return id;
}

void GatewayHub::Unregister(uint64_t id) {
  absl::MutexLock lock(&mu_);
  streams_.erase(id);
}

void GatewayHub::OnAck(uint64_t id, const v1::TableAck& ack) {
  const absl::Duration now = monotonic_();
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  v1::GatewayStream& info = it->second.info;
  if (ack.table_version() != info.table_version_acked()) {
    info.set_table_version_acked(ack.table_version());
    info.set_propagation_us(-1);
    for (const auto& [version, at] : swapped_at_) {
      if (version != ack.table_version()) continue;
      // From the swap, or from the send for a gateway that connected after it.
      const absl::Duration from =
          version == info.table_version_sent() ? std::max(at, it->second.table_sent_at) : at;
      info.set_propagation_us(absl::ToInt64Microseconds(now - from));
    }
  }
  info.set_endpoint_changes_acked(ack.endpoint_changes());
}

void GatewayHub::OnTraffic(uint64_t id, size_t decisions, size_t reports) {
  if (decisions == 0 && reports == 0) return;
  const absl::Time now = wall_();
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  v1::GatewayStream& info = it->second.info;
  info.set_decisions(info.decisions() + decisions);
  if (reports > 0) {
    info.set_reports(info.reports() + reports);
    info.set_last_report_unix_ms(UnixMillis(now));
  }
}

void GatewayHub::PushChange(const std::string& cluster, const std::string& endpoint, bool ejected) {
  v1::EndpointChange change;
  change.set_cluster(cluster);
  change.set_endpoint(endpoint);
  change.set_ejected(ejected);
  absl::MutexLock lock(&mu_);
  auto same = std::find_if(changes_since_table_.begin(), changes_since_table_.end(),
                           [&](const v1::EndpointChange& c) {
                             return c.cluster() == cluster && c.endpoint() == endpoint;
                           });
  if (same != changes_since_table_.end()) changes_since_table_.erase(same);
  changes_since_table_.push_back(change);
  for (auto& [id, entry] : streams_) {
    v1::ServerMessage message;
    *message.add_endpoint_changes() = change;
    entry.info.set_endpoint_changes_sent(entry.info.endpoint_changes_sent() + 1);
    entry.stream->Push(std::move(message));
  }
}

void GatewayHub::OnEjected(const std::string& cluster, const std::string& endpoint,
                           health::EjectionReason, uint32_t, absl::Duration) {
  PushChange(cluster, endpoint, /*ejected=*/true);
}

void GatewayHub::OnReturned(const std::string& cluster, const std::string& endpoint,
                            absl::Duration) {
  PushChange(cluster, endpoint, /*ejected=*/false);
}

void GatewayHub::OnShared(const std::string& cluster, const std::string& endpoint, bool ejected) {
  PushChange(cluster, endpoint, ejected);
}

void GatewayHub::SendKeepalives() {
  absl::MutexLock lock(&mu_);
  for (auto& [id, entry] : streams_) {
    v1::ServerMessage message;
    message.set_keepalive(true);
    entry.stream->Push(std::move(message));
  }
}

void GatewayHub::Start(absl::Duration period) {
  keepalive_thread_ = std::thread([this, period] {
    while (!stop_.WaitForNotificationWithTimeout(period)) SendKeepalives();
  });
}

void GatewayHub::Stop() {
  if (!keepalive_thread_.joinable()) return;
  stop_.Notify();
  keepalive_thread_.join();
}

v1::ListGatewaysResponse GatewayHub::List() const {
  v1::ListGatewaysResponse out;
  absl::MutexLock lock(&mu_);
  out.set_server_version(server_version_);
  for (const auto& [id, entry] : streams_) *out.add_streams() = entry.info;
  std::sort(out.mutable_streams()->begin(), out.mutable_streams()->end(),
            [](const v1::GatewayStream& a, const v1::GatewayStream& b) {
              return a.name() != b.name() ? a.name() < b.name() : a.peer() < b.peer();
            });
  return out;
}

}  // namespace sluice::api
