#include "server/api/replica_health.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "lib/common/log.h"
#include "sluice/v1/replica.pb.h"

namespace sluice::api {
namespace {

constexpr absl::string_view kEjections = "ejections/";

}  // namespace

std::string SharedEjectionKey(absl::string_view prefix, absl::string_view cluster,
                              absl::string_view endpoint) {
  return absl::StrCat(prefix, kEjections, cluster, "/", endpoint);
}

health::SharedEjections ParseSharedEjections(const std::vector<store::EtcdKeyValue>& kvs) {
  health::SharedEjections out;
  for (const store::EtcdKeyValue& kv : kvs) {
    v1::SharedEjection value;
    const auto parsed = google::protobuf::util::JsonStringToMessage(kv.value, &value);
    if (!parsed.ok() || value.cluster().empty() || value.endpoint().empty()) {
      LogWarning("etcd key ", kv.key, ": not a shared ejection (skipped): ",
                 parsed.ok() ? "cluster or endpoint missing" : parsed.ToString());
      continue;
    }
    health::SharedEjection& e = out[value.cluster()][value.endpoint()];
    e.reason = health::EjectionReasonFromName(value.reason());
    e.ejections = value.ejections();
    e.multiplier = value.multiplier();
    e.since = absl::FromUnixMillis(value.since_unix_ms());
    e.until = absl::FromUnixMillis(value.until_unix_ms());
  }
  return out;
}

ReplicaHealth::ReplicaHealth(store::EtcdClient& etcd, health::HealthTracker& tracker,
                             ReportForwarder* forwarder, Options options)
    : etcd_(etcd),
      tracker_(tracker),
      forwarder_(forwarder),
      options_(std::move(options)),
      prefix_(absl::StrCat(etcd.location().prefix, kEjections)) {}

absl::StatusOr<std::unique_ptr<ReplicaHealth>> ReplicaHealth::Start(store::EtcdClient& etcd,
                                                                    health::HealthTracker& tracker,
                                                                    ReportForwarder* forwarder,
                                                                    Options options) {
  std::unique_ptr<ReplicaHealth> self(
      new ReplicaHealth(etcd, tracker, forwarder, std::move(options)));
  absl::StatusOr<store::EtcdClient::Range> range = etcd.GetPrefix(self->prefix_);
  if (!range.ok()) return range.status();
  tracker.SetShared(ParseSharedEjections(range->kvs));
  // Not leading yet: the election starts once the server serves.
  tracker.SetDetecting(false);
  self->FollowRole();
  ReplicaHealth* raw = self.get();
  // The watch's thread only marks the set stale: reading it is the Run thread's, which
  // retries and stops when told.
  self->watch_ = etcd.WatchPrefix(self->prefix_, range->revision, [raw](int64_t) {
    absl::MutexLock lock(&raw->mu_);
    raw->reread_ = true;
  });
  self->thread_ = std::thread([raw] { raw->Run(); });
  return self;
}

ReplicaHealth::~ReplicaHealth() {
  watch_.reset();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void ReplicaHealth::OnEjected(const std::string& cluster, const std::string& endpoint,
                              health::EjectionReason, uint32_t, absl::Duration) {
  absl::MutexLock lock(&mu_);
  queue_.push_back({cluster, endpoint, /*ejected=*/true});
}

void ReplicaHealth::OnReturned(const std::string& cluster, const std::string& endpoint,
                               absl::Duration) {
  absl::MutexLock lock(&mu_);
  queue_.push_back({cluster, endpoint, /*ejected=*/false});
}

void ReplicaHealth::FollowRole() {
  const int64_t fence = options_.fence();
  const bool leads = fence != 0;
  if (leads && !detecting_) {
    const bool same_term = fence == detecting_fence_;
    // A new term: what the previous leader shared, as etcd has it now (the watch may lag).
    if (!same_term && !Reread()) return;  // not detecting yet; tried again next round
    tracker_.SetDetecting(true, /*take_over=*/!same_term);
    detecting_ = true;
    detecting_fence_ = fence;
  } else if (!leads && detecting_) {
    tracker_.SetDetecting(false);
    detecting_ = false;
  }
  if (forwarder_ != nullptr) forwarder_->SetActive(!detecting_);
}

void ReplicaHealth::Run() {
  while (true) {
    std::deque<Change> changes;
    bool reread = false;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || reread_ || !queue_.empty();
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), options_.role_poll);
      if (stopping_) return;
      changes.swap(queue_);
      reread = reread_;
      reread_ = false;
    }
    if ((reread || reread_failed_) && !Reread()) {
      absl::MutexLock lock(&mu_);
      reread_ = true;
    }
    FollowRole();
    // Changes etcd did not confirm go first, in their order.
    retry_.insert(retry_.end(), changes.begin(), changes.end());
    std::deque<Change> pending;
    pending.swap(retry_);
    while (!pending.empty()) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      if (!Write(pending.front())) {
        retry_ = std::move(pending);  // this and what follows, next round
        break;
      }
      pending.pop_front();
    }
  }
}

bool ReplicaHealth::Write(const Change& change) {
  const int64_t fence = options_.fence();
  if (fence == 0) return true;  // no longer leading: the next leader's detector decides
  const std::string key =
      SharedEjectionKey(etcd_.location().prefix, change.cluster, change.endpoint);
  std::vector<store::EtcdWrite> writes;
  int64_t lease = 0;
  if (change.ejected) {
    // As the detector holds it now (it may have returned already: then nothing to share).
    const std::optional<health::ClusterHealth> cluster = tracker_.Describe(change.cluster);
    if (!cluster.has_value()) return true;
    const health::EndpointHealth* endpoint = nullptr;
    for (const health::EndpointHealth& e : cluster->endpoints) {
      if (e.id == change.endpoint) endpoint = &e;
    }
    if (endpoint == nullptr || !endpoint->ejected) return true;
    v1::SharedEjection value;
    value.set_cluster(change.cluster);
    value.set_endpoint(change.endpoint);
    value.set_reason(health::EjectionReasonName(endpoint->reason));
    value.set_ejections(endpoint->ejections);
    value.set_multiplier(endpoint->multiplier);
    value.set_since_unix_ms(absl::ToUnixMillis(endpoint->ejected_since));
    value.set_until_unix_ms(absl::ToUnixMillis(endpoint->ejected_until));
    value.set_replica(options_.replica());
    std::string json;
    if (!google::protobuf::util::MessageToJsonString(value, &json).ok()) return true;
    // Until the detector's tick after the ejection time returns it: the key outlives the
    // ejection only when no leader is left to delete it, and then by at most one interval.
    const absl::Duration ttl = endpoint->ejected_until - absl::Now() + cluster->interval;
    if (ttl <= absl::ZeroDuration()) return true;  // over before it could be shared
    absl::StatusOr<int64_t> granted = etcd_.GrantLease(std::max(ttl, absl::Seconds(1)));
    if (!granted.ok()) {
      LogWarning("outlier: could not share the ejection of ", change.endpoint, " of ",
                 change.cluster,
                 " with the other replicas yet (trying again): ", granted.status().message());
      return false;
    }
    lease = *granted;
    writes.push_back(store::EtcdWrite::Put(key, json, lease));
  } else {
    writes.push_back(store::EtcdWrite::Delete(key));
  }
  absl::StatusOr<store::EtcdClient::TxnResult> txn =
      etcd_.CompareAndWrite(options_.leader_key, fence, writes);
  if (!txn.ok()) {
    // Perhaps committed, perhaps not: written again next round (the same value).
    LogWarning("outlier: could not share the ", change.ejected ? "ejection" : "return", " of ",
               change.endpoint, " of ", change.cluster,
               " with the other replicas yet (trying again): ", txn.status().message());
    return false;
  }
  if (!txn->succeeded) {
    LogWarning("outlier: the ", change.ejected ? "ejection" : "return", " of ", change.endpoint,
               " of ", change.cluster, " is not shared: this replica no longer leads");
    if (lease != 0) (void)etcd_.RevokeLease(lease);
  }
  return true;
}

bool ReplicaHealth::Reread() {
  absl::StatusOr<store::EtcdClient::Range> range = etcd_.GetPrefix(prefix_);
  if (!range.ok()) {
    if (!reread_failed_) {
      LogError("could not read the ejections the leading replica shares (trying again): ",
               range.status().message());
    }
    reread_failed_ = true;
    return false;
  }
  reread_failed_ = false;
  tracker_.SetShared(ParseSharedEjections(range->kvs));
  return true;
}

}  // namespace sluice::api
