#pragma once

// Outlier detection and canary evidence across sluice-server replicas on one etcd prefix:
// every gateway report reaches the one detector of its cluster, the leading replica's. A
// follower forwards its gateways' reports there (ReportForwarder), named by cluster and
// endpoint, since its snapshot versions and cluster ids are its own; the leader counts them
// as its own gateways' (ReplicaServiceImpl).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "lib/security/tls.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"
#include "server/canary/traffic_recorder.h"
#include "server/health/health_tracker.h"
#include "server/security/access_control.h"
#include "sluice/v1/replica.grpc.pb.h"

namespace sluice::api {

// The leader's side: forwarded reports feed its detectors and canary evidence.
class ReplicaServiceImpl final : public v1::ReplicaService::CallbackService {
 public:
  // `leads`: whether this replica leads now (others' batches are refused, so that the
  // follower looks the leader up again).
  ReplicaServiceImpl(health::HealthTracker& health, canary::TrafficRecorder& traffic,
                     std::function<bool()> leads)
      : health_(health), traffic_(traffic), leads_(std::move(leads)) {}

  // Who may call (the replica role; null: anyone). Set before the server starts.
  void SetAccessControl(const security::AccessControl* access) { access_ = access; }

  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context,
                                    const v1::ForwardRequest* request,
                                    v1::ForwardResponse* response) override;

 private:
  health::HealthTracker& health_;
  canary::TrafficRecorder& traffic_;
  std::function<bool()> leads_;
  const security::AccessControl* access_ = nullptr;
};

// What a reported outcome tells about its endpoint (a gateway's report or a forwarded one).
health::AttemptEvent ToAttemptEvent(v1::Outcome outcome, uint32_t status_code);

// Counts a forwarded attempt into `health` and `traffic` (the leader's handling of one).
void CountForwarded(const v1::ForwardedAttempt& attempt, health::HealthTracker& health,
                    canary::TrafficRecorder& traffic);

// The follower's side: a buffer the decision stream fills and a thread that sends it to the
// leader every `interval`. Best effort like the gateways' own reports: a batch the leader
// does not take (no leader yet, a leader that just died) is dropped and counted.
class ReportForwarder {
 public:
  struct Options {
    std::function<std::string()> replica;  // this replica's address, for the leader's log
    // The leader's address ("" while none is known) and this replica's: reports are never
    // sent to itself (it may be named leader a moment before it detects).
    std::function<std::string()> leader_address;
    std::function<std::string()> own_address;
    security::Transport transport;  // the server's own files, presented as a client
    absl::Duration interval = absl::Milliseconds(50);
    absl::Duration deadline = absl::Seconds(1);
    size_t max_buffered = 65536;  // beyond it (a leader that cannot keep up) reports drop
  };
  ReportForwarder(Options options, prometheus::Registry& registry);
  ~ReportForwarder();

  // Whether this replica forwards (it follows) rather than counts itself (it leads).
  void SetActive(bool active) { active_.store(active, std::memory_order_relaxed); }
  bool active() const { return active_.load(std::memory_order_relaxed); }
  void Add(v1::ForwardedAttempt attempt);

 private:
  void Run();
  void Send(std::vector<v1::ForwardedAttempt> batch);

  Options options_;
  std::atomic<bool> active_{false};
  prometheus::Counter& sent_;
  prometheus::Counter& dropped_;
  absl::Mutex mu_;
  std::vector<v1::ForwardedAttempt> buffer_ ABSL_GUARDED_BY(mu_);
  // Touched by the sending thread only.
  std::string channel_address_;
  std::unique_ptr<v1::ReplicaService::Stub> stub_;
  absl::Time last_warning_ = absl::InfinitePast();
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace sluice::api
