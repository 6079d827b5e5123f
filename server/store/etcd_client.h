#pragma once

// A small client of etcd's v3 API (KV, Watch, Lease) over gRPC, with the messages compiled
// from etcd's own .proto files (proto/etcd). Synchronous: the server calls it from its change
// path and its own threads, never from a request's.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/common/host_port.h"
#include "lib/common/mutex.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace sluice::store {

// Where sluice keeps its state in etcd: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
struct EtcdLocation {
  HostPortList endpoints;
  std::string prefix;  // starts and ends with '/', e.g. "/sluice/"

  std::string ToString() const;  // parses back to the same value
};

// The error names what is wrong ("etcd://127.0.0.1:2379/sluice: ...").
absl::StatusOr<EtcdLocation> ParseEtcdLocation(absl::string_view url);

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

// One operation of a transaction.
struct EtcdWrite {
  static EtcdWrite Put(std::string key, std::string value, int64_t lease = 0) {
    return EtcdWrite{false, std::move(key), std::move(value), lease};
  }
  static EtcdWrite Delete(std::string key) { return EtcdWrite{true, std::move(key), "", 0}; }

  bool is_delete = false;
  std::string key;
  std::string value;
  int64_t lease = 0;
};

class EtcdClient {
 public:
  struct Options {
    // Each call's deadline: a call to an etcd without a quorum fails after it.
    absl::Duration timeout = absl::Seconds(3);
  };

  // Connects lazily: an unreachable etcd shows in the first call's error.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(const EtcdLocation& location,
                                                            Options options);
  ~EtcdClient();

  const EtcdLocation& location() const { return location_; }

  // Keys at one revision (the store's revision when it answered).
  struct Range {
    std::vector<EtcdKeyValue> kvs;
    int64_t revision = 0;
  };
  absl::StatusOr<Range> GetPrefix(absl::string_view prefix);
  absl::StatusOr<Range> Get(absl::string_view key);

  // Applies every write in one transaction if `key`'s mod revision is `mod_revision` (0: the
  // key does not exist), and nothing otherwise: a compare-and-swap.
  struct TxnResult {
    bool succeeded = false;
    int64_t revision = 0;  // the store's revision after the transaction
  };
  absl::StatusOr<TxnResult> CompareAndWrite(absl::string_view key, int64_t mod_revision,
                                            const std::vector<EtcdWrite>& writes);
  absl::StatusOr<int64_t> Put(absl::string_view key, absl::string_view value, int64_t lease = 0);

  // Leases: keys attached to one are deleted when it expires or is revoked.
  absl::StatusOr<int64_t> GrantLease(absl::Duration ttl);
  // One refresh; NotFound when the lease has expired.
  absl::Status KeepAlive(int64_t lease);
  absl::Status RevokeLease(int64_t lease);

  // Follows every change under a prefix from its own thread until destroyed.
  class Watch {
   public:
    ~Watch();

   private:
    friend class EtcdClient;
    Watch() = default;
    void Run();

    EtcdClient* client_ = nullptr;
    std::string prefix_;
    int64_t next_revision_ = 0;
    std::function<void(int64_t)> on_change_;
    Mutex mu_;
    bool stopping_ ABSL_GUARDED_BY(mu_) = false;
    grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
    std::thread thread_;
  };
  // Calls `on_change(revision)` once per batch of changes under `prefix` after
  // `after_revision` (revision: the store's, the batch included). A broken stream is reopened
  // from the last revision seen; when etcd has compacted past it, `on_change` is called with
  // the current revision so that the caller reads everything again.
  std::unique_ptr<Watch> WatchPrefix(std::string prefix, int64_t after_revision,
                                     std::function<void(int64_t revision)> on_change);

 private:
  struct Stubs;
  EtcdClient(EtcdLocation location, Options options, std::shared_ptr<grpc::Channel> channel);
  // The keys from `key` up to `range_end` (exclusive; empty: `key` alone).
  absl::StatusOr<Range> Read(absl::string_view key, absl::string_view range_end);
  // "etcd at 127.0.0.1:2379 did not answer: ..."
  absl::Status Error(const char* what, int code, const std::string& message) const;

  EtcdLocation location_;
  Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stubs> stubs_;
};

// The end of the key range holding every key that starts with `prefix` (etcd's range_end).
std::string PrefixRangeEnd(absl::string_view prefix);

}  // namespace sluice::store
