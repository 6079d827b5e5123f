#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "lib/routing/snapshot.h"
#include "server/health/health_tracker.h"
#include "sluice/v1/admin.pb.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::api {

// Keeps every connected gateway worker's copy of the decision table current, as an xDS
// server does for Envoy: the table of each configuration version is encoded once and pushed
// to every stream at once, then each endpoint health change as it happens, in order; a stream
// that connects later gets the current table and the changes made since it was encoded.
// Knows what each gateway has acknowledged (ListGateways) and how long each version took to
// reach it. Thread-safe. Lock order: the hub's lock, then a stream's.
class GatewayHub final : public health::HealthEvents {
 public:
  // The hub's view of one gateway stream. Push must be quick and must not call the hub.
  class Stream {
   public:
    virtual ~Stream() = default;
    // Queues a message for the gateway (dropped when the stream is closing). A keepalive is
    // only queued when nothing else is waiting to be written.
    virtual void Push(v1::ServerMessage message) = 0;
  };

  using MonotonicClock = std::function<absl::Duration()>;  // time since any fixed point
  using WallClock = std::function<absl::Time()>;

  GatewayHub(MonotonicClock monotonic, WallClock wall);
  ~GatewayHub() override;

  // A new snapshot is serving (ConfigStore::OnSwap): encode its table and push it.
  void OnSnapshot(const routing::Snapshot& snapshot);

  // Returns the stream's id; sends it the current table and the changes made since.
  uint64_t Register(Stream* stream, std::string name, std::string peer, v1::DecisionMode mode);
  void Unregister(uint64_t id);
  void OnAck(uint64_t id, const v1::TableAck& ack);
  void OnTraffic(uint64_t id, size_t decisions, size_t reports);

  // Pushes a keepalive to every stream; the thread Start() runs does so every `period`.
  void SendKeepalives();
  void Start(absl::Duration period = absl::Seconds(1));
  void Stop();

  v1::ListGatewaysResponse List() const;

  // health::HealthEvents: ejections and returns become EndpointChange pushes.
  void OnEjected(const std::string& cluster, const std::string& endpoint,
                 health::EjectionReason reason, uint32_t ejections,
                 absl::Duration duration) override;
  void OnReturned(const std::string& cluster, const std::string& endpoint,
                  absl::Duration ejected_for) override;
  void OnShared(const std::string& cluster, const std::string& endpoint, bool ejected) override;
  void OnOverflow(const std::string&, const std::string&) override {}
  void OnEjectionsActive(const std::string&, size_t) override {}

 private:
  struct Entry {
    Stream* stream = nullptr;
    v1::GatewayStream info;
    absl::Duration table_sent_at;  // monotonic, when the last table was pushed to it
  };
  void PushChange(const std::string& cluster, const std::string& endpoint, bool ejected);
  void SendTableLocked(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  MonotonicClock monotonic_;
  WallClock wall_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const v1::DecisionTable> table_ ABSL_GUARDED_BY(mu_);
  // Health changes since table_ was encoded, for streams that connect later: by cluster and
  // endpoint, the latest state only.
  std::vector<v1::EndpointChange> changes_since_table_ ABSL_GUARDED_BY(mu_);
  // When recent versions started serving, for propagation times.
  std::deque<std::pair<uint64_t, absl::Duration>> swapped_at_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Entry> streams_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t server_version_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Notification stop_;
  std::thread keepalive_thread_;
};

// Tells health events to several listeners in order (the log and metrics, the hub, the
// replicas' shared ejections).
class HealthEventFanout final : public health::HealthEvents {
 public:
  explicit HealthEventFanout(std::vector<health::HealthEvents*> sinks) : sinks_(std::move(sinks)) {}
  // Guarded: the store's watch thread may swap a snapshot in (and the tracker tell of it)
  // while main adds the replicas' listener.
  void Add(health::HealthEvents* sink) {
    absl::MutexLock lock(&mu_);
    sinks_.push_back(sink);
  }
  // Before `sink` goes away (the tracker's ticker outlives it).
  void Remove(health::HealthEvents* sink) {
    absl::MutexLock lock(&mu_);
    sinks_.erase(std::remove(sinks_.begin(), sinks_.end(), sink), sinks_.end());
  }
  void OnEjected(const std::string& cluster, const std::string& endpoint,
                 health::EjectionReason reason, uint32_t ejections,
                 absl::Duration duration) override {
    absl::MutexLock lock(&mu_);
    for (auto* s : sinks_) s->OnEjected(cluster, endpoint, reason, ejections, duration);
  }
  void OnReturned(const std::string& cluster, const std::string& endpoint,
                  absl::Duration ejected_for) override {
    absl::MutexLock lock(&mu_);
    for (auto* s : sinks_) s->OnReturned(cluster, endpoint, ejected_for);
  }
  void OnShared(const std::string& cluster, const std::string& endpoint, bool ejected) override {
    absl::MutexLock lock(&mu_);
    for (auto* s : sinks_) s->OnShared(cluster, endpoint, ejected);
  }
  void OnOverflow(const std::string& cluster, const std::string& endpoint) override {
    absl::MutexLock lock(&mu_);
    for (auto* s : sinks_) s->OnOverflow(cluster, endpoint);
  }
  void OnEjectionsActive(const std::string& cluster, size_t active) override {
    absl::MutexLock lock(&mu_);
    for (auto* s : sinks_) s->OnEjectionsActive(cluster, active);
  }

 private:
  absl::Mutex mu_;
  std::vector<health::HealthEvents*> sinks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::api
