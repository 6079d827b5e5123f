#pragma once

// Outlier ejections shared by sluice-server replicas on one etcd prefix. The leading replica
// detects (every gateway's reports reach it: ReportForwarder) and writes each ejection under
// PREFIX/ejections/ with a lease as long as the ejection, so that it ends by itself if no
// leader is left to return it; it deletes the key when its detector returns the endpoint.
// Every replica follows the prefix and hands the set to its HealthTracker, whose load
// balancers, decisions and pushed tables then skip those endpoints. A replica that becomes
// leader takes the set over (HealthTracker::SetDetecting).

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/api/replica_service.h"
#include "server/health/health_tracker.h"
#include "server/store/etcd_client.h"

namespace sluice::api {

// PREFIX/ejections/CLUSTER/ENDPOINT (`prefix` ends with '/').
std::string SharedEjectionKey(absl::string_view prefix, absl::string_view cluster,
                              absl::string_view endpoint);
// The set the keys under PREFIX/ejections/ hold; a value that does not parse is skipped with
// a warning naming its key.
health::SharedEjections ParseSharedEjections(const std::vector<store::EtcdKeyValue>& kvs);

class ReplicaHealth final : public health::HealthEvents {
 public:
  struct Options {
    std::function<std::string()> replica;  // this replica's address, written with its ejections
    std::string leader_key;                // PREFIX/leader
    // The leader key's mod revision while this replica leads, else 0: every write is
    // fenced on it, so a replica that lost the lead cannot eject or return anything.
    std::function<int64_t()> fence;
    absl::Duration role_poll = absl::Milliseconds(100);
  };

  // Reads the shared set, starts following it and the election. `forwarder` (may be null)
  // is switched on while this replica follows. Add the result to the tracker's events.
  static absl::StatusOr<std::unique_ptr<ReplicaHealth>> Start(store::EtcdClient& etcd,
                                                              health::HealthTracker& tracker,
                                                              ReportForwarder* forwarder,
                                                              Options options);
  ~ReplicaHealth() override;

  // health::HealthEvents: the detecting replica's own ejections and returns, queued for the
  // writing thread (called under the tracker's lock).
  void OnEjected(const std::string& cluster, const std::string& endpoint,
                 health::EjectionReason reason, uint32_t ejections,
                 absl::Duration duration) override;
  void OnReturned(const std::string& cluster, const std::string& endpoint,
                  absl::Duration ejected_for) override;
  void OnOverflow(const std::string&, const std::string&) override {}
  void OnEjectionsActive(const std::string&, size_t) override {}

 private:
  struct Change {
    std::string cluster;
    std::string endpoint;
    bool ejected = false;
  };
  ReplicaHealth(store::EtcdClient& etcd, health::HealthTracker& tracker, ReportForwarder* forwarder,
                Options options);
  void Run();
  // Detects while leading; a new term takes the shared set over, read from etcd first.
  void FollowRole();
  // False when etcd did not confirm it (retried on the next round).
  bool Write(const Change& change);
  // The shared set from etcd into the tracker; false when etcd could not be read.
  bool Reread();

  store::EtcdClient& etcd_;
  health::HealthTracker& tracker_;
  ReportForwarder* forwarder_;
  Options options_;
  std::string prefix_;  // PREFIX/ejections/
  absl::Mutex mu_;
  std::deque<Change> queue_ ABSL_GUARDED_BY(mu_);
  bool reread_ ABSL_GUARDED_BY(mu_) = false;  // the watch saw a change
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The Run thread's own.
  std::deque<Change> retry_;
  bool detecting_ = false;
  int64_t detecting_fence_ = 0;  // the term this replica last detected in
  bool reread_failed_ = false;
  std::unique_ptr<store::EtcdClient::Watch> watch_;
  std::thread thread_;
};

}  // namespace sluice::api
