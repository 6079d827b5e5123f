#pragma once

// One leader among sluice-server replicas, elected through etcd as etcd's own `concurrency`
// package does it: the leader is whoever created the election key, attached to a lease it
// keeps alive. When the leader dies (or stops answering), its lease expires, etcd deletes the
// key, and another replica creates it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "lib/common/mutex.h"
#include "server/store/etcd_client.h"

namespace sluice::store {

class LeaderElection {
 public:
  struct Options {
    std::string key;       // e.g. "/sluice/leader"
    std::string identity;  // what the key holds: who leads, for messages
    // The lease's time to live: how long a dead leader keeps the role. Renewed every third.
    absl::Duration ttl = absl::Seconds(5);
    // Monotonic by default: a wall clock stepped back would stretch the lease.
    std::function<absl::Time()> clock = [] {
      return absl::UnixEpoch() +
             absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
    };
  };

  // Campaigns from its own thread until destroyed; resigns (revokes its lease) then.
  LeaderElection(EtcdClient& etcd, Options options);
  ~LeaderElection();

  // True while this replica holds the key under a lease it renewed less than a TTL ago (by
  // the time the renewal was sent, so etcd cannot have expired it yet). A process that was
  // stopped for longer than the TTL is no leader from the moment it wakes, before its thread
  // runs again.
  bool IsLeader() const;
  // The election key's revision while this replica leads (0 otherwise): writes that only the
  // leader may make compare it, so a replica that lost the role cannot make them (a fence).
  int64_t fence() const;
  // What this replica's key says (Options::identity).
  const std::string& identity() const { return options_.identity; }
  // Who leads, as last seen ("" when nobody does).
  std::string leader() const;

 private:
  void Run();
  void Campaign();
  void Renew();
  void StepDown(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  EtcdClient& etcd_;
  const Options options_;
  mutable Mutex mu_;
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t fence_ ABSL_GUARDED_BY(mu_) = 0;  // 0: not leading
  absl::Time valid_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string leader_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace sluice::store
