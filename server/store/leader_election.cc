#include "server/store/leader_election.h"

#include "absl/strings/str_cat.h"
#include "lib/common/log.h"

namespace sluice::store {

LeaderElection::LeaderElection(EtcdClient& etcd, Options options)
    : etcd_(etcd), options_(std::move(options)) {
  thread_ = std::thread([this] { Run(); });
}

LeaderElection::~LeaderElection() {
  stop_.Notify();
  thread_.join();
  int64_t lease = 0;
  {
    MutexLock lock(&mu_);
    lease = lease_;
    if (fence_ != 0) LogInfo("leader election: ", options_.identity, " resigns");
    fence_ = 0;
    lease_ = 0;
  }
  // Revoking deletes the key at once: another replica takes over without waiting for the TTL.
  if (lease != 0) (void)etcd_.RevokeLease(lease);
}

bool LeaderElection::IsLeader() const {
  MutexLock lock(&mu_);
  return fence_ != 0 && options_.clock() < valid_until_;
}

int64_t LeaderElection::fence() const {
  MutexLock lock(&mu_);
  return fence_ != 0 && options_.clock() < valid_until_ ? fence_ : 0;
}

std::string LeaderElection::leader() const {
  MutexLock lock(&mu_);
  return leader_;
}

void LeaderElection::Run() {
  const absl::Duration period = options_.ttl / 3;
  while (!stop_.HasBeenNotified()) {
    bool leading;
    {
      MutexLock lock(&mu_);
      leading = fence_ != 0;
    }
    if (leading) {
      Renew();
    } else {
      Campaign();
    }
    stop_.WaitForNotificationWithTimeout(period);
  }
}

void LeaderElection::Campaign() {
  // Before the lease is granted or renewed: etcd counts its TTL from no earlier than this.
  const absl::Time sent = options_.clock();
  int64_t lease;
  {
    MutexLock lock(&mu_);
    lease = lease_;
  }
  if (lease == 0) {
    absl::StatusOr<int64_t> granted = etcd_.GrantLease(options_.ttl);
    if (!granted.ok()) {
      LogWarning("leader election: ", granted.status().message());
      return;
    }
    lease = *granted;
    MutexLock lock(&mu_);
    lease_ = lease;
  } else if (absl::Status s = etcd_.KeepAlive(lease); !s.ok()) {
    // The campaign's own lease lapsed (etcd was away): take a new one next time.
    MutexLock lock(&mu_);
    lease_ = 0;
    return;
  }
  // The key is created only if nobody holds it (mod revision 0: absent).
  absl::StatusOr<EtcdClient::TxnResult> txn = etcd_.CompareAndWrite(
      options_.key, 0, {EtcdWrite::Put(options_.key, options_.identity, lease)});
  if (!txn.ok()) {
    LogWarning("leader election: ", txn.status().message());
    return;
  }
  if (txn->succeeded) {
    MutexLock lock(&mu_);
    fence_ = txn->revision;
    valid_until_ = sent + options_.ttl;
    leader_ = options_.identity;
    LogInfo("leader election: ", options_.identity, " leads (", options_.key, " at revision ",
            fence_, ")");
    return;
  }
  absl::StatusOr<EtcdClient::Range> holder = etcd_.Get(options_.key);
  if (!holder.ok()) return;
  MutexLock lock(&mu_);
  leader_ = holder->kvs.empty() ? "" : holder->kvs[0].value;
  if (!holder->kvs.empty() && holder->kvs[0].lease == lease) {
    // Still ours: this replica stepped down while etcd could not confirm its lease, and the
    // lease outlived that. It leads again, under the same key.
    fence_ = holder->kvs[0].mod_revision;
    valid_until_ = sent + options_.ttl;
    LogInfo("leader election: ", options_.identity, " leads again");
  }
}

void LeaderElection::Renew() {
  int64_t lease;
  {
    MutexLock lock(&mu_);
    lease = lease_;
  }
  const absl::Time sent = options_.clock();
  const absl::Status renewed = etcd_.KeepAlive(lease);
  MutexLock lock(&mu_);
  if (renewed.ok()) {
    valid_until_ = sent + options_.ttl;
    return;
  }
  if (absl::IsNotFound(renewed)) {
    StepDown("its lease expired");
    lease_ = 0;
  } else if (options_.clock() >= valid_until_) {
    StepDown(absl::StrCat("it could not renew its lease: ", renewed.message()));
  }
}

void LeaderElection::StepDown(const std::string& why) {
  if (fence_ == 0) return;
  LogWarning("leader election: ", options_.identity, " no longer leads: ", why);
  fence_ = 0;
  leader_.clear();
}

}  // namespace sluice::store
