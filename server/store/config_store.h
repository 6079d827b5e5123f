#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "lib/config/diagnostics.h"
#include "lib/config/resources.h"
#include "lib/routing/endpoint_runtime.h"
#include "lib/routing/snapshot.h"
#include "server/routing/snapshot_compiler.h"
#include "server/store/etcd_client.h"
#include "server/store/open_writers.h"
#include "server/store/snapshot_cell.h"

namespace sluice::store {

// Kind/namespace/name of a resource, e.g. VirtualService/default/reviews.
struct ResourceKey {
  std::string kind;
  std::string namespace_name = "default";
  std::string name;
  std::string ToString() const;
  bool operator==(const ResourceKey&) const = default;
};

struct StoredResource {
  ResourceKey key;
  std::string source;  // "applied", or the file it came from
  std::string yaml;
};

struct ChangeResult {
  // Not OK: the change was refused as a whole before validation (too many resources), and
  // says why; nothing else in the result is filled but the version.
  absl::Status refused;
  bool applied = false;
  uint64_t version = 0;  // the new version, or the unchanged current one
  config::Diagnostics diagnostics;
  std::vector<std::string> changed;  // keys of created or replaced resources
};

// Holds the configuration and its compiled snapshot. Two layers make the configuration:
// the files given on the command line (watched, reloaded) and resources applied through the
// admin API (persisted in the state directory, replacing file resources of the same key).
// Every change is validated and compiled as a whole; a change with any error changes
// nothing. Readers get the current snapshot without taking the change lock.
class ConfigStore {
 public:
  struct Options {
    std::vector<std::string> config_paths;
    std::string state_dir;  // empty: applied resources are not persisted
    routing::CompileOptions compile;
    // A changed file is read only once it has stayed unchanged (size and modification time)
    // for this long, so a file caught while an editor or `cat > file` writes it is not
    // loaded half-written.
    // Besides, a file some process still has open after writing to it (inotify) is not read
    // until it is closed, however long the writer pauses (see OpenWriters).
    absl::Duration settle = absl::Milliseconds(200);
    // The most resources one Apply may hold; 0: no limit.
    size_t max_apply_resources = 0;
    // Set: the applied resources and the version live in etcd under the client's prefix
    // (instead of state_dir), shared by every replica: a change is a compare-and-swap on the
    // version this replica validated against, and each replica follows the others' changes.
    //   PREFIX/resources/KIND/NAMESPACE/NAME   the resource's YAML
    //   PREFIX/version                         the configuration version, written by every change
    std::shared_ptr<EtcdClient> etcd;
    // false: the store does not follow other replicas' changes (a test's replica that stays
    // behind, to show that its next change is refused).
    bool follow_etcd = true;
  };

  // Loads the files and the persisted state. Fails, naming every problem, when they do not
  // form a valid configuration.
  static absl::StatusOr<std::unique_ptr<ConfigStore>> Open(Options options);

  // The snapshot serving decisions; lock-free except right after a change.
  std::shared_ptr<const routing::Snapshot> Current() const { return current_.Load(); }
  uint64_t version() const { return Current()->version(); }

  // One change made of several named YAML texts: applied together or not at all. Refused
  // (ChangeResult::refused) when it holds more than Options::max_apply_resources resources.
  struct File {
    std::string name;
    std::string yaml;
  };
  ChangeResult Apply(const std::vector<File>& files, bool dry_run);
  ChangeResult Delete(const ResourceKey& key);
  // Re-reads the configuration files if any changed since the last read (name, size or
  // modification time). Returns nullopt when nothing changed.
  std::optional<ChangeResult> ReloadFilesIfChanged();

  std::vector<StoredResource> List(absl::string_view kind) const;
  std::optional<StoredResource> Get(const ResourceKey& key) const;

  // A running canary's claim on the weights of its host's stable/canary split: while it
  // holds, a change that edits those declared weights is rejected with `description`.
  struct CanaryLock {
    std::string host;  // FQDN
    std::string stable_subset;
    std::string canary_subset;
    std::string description;  // e.g. "Canary default/shop is Progressing with the canary at 25%"
    bool operator==(const CanaryLock&) const = default;
  };
  // Recompiles the current configuration with these canary weights (routing::CanaryWeight)
  // and swaps it in as a new version; `locks` replace the previous ones.
  ChangeResult SetCanaryWeights(std::vector<routing::CanaryWeight> weights,
                                std::vector<CanaryLock> locks);

  // Called with every new snapshot just before it starts serving (metrics, health), and
  // at once with the current one.
  void OnSwap(std::function<void(const routing::Snapshot&)> listener);

  routing::RuntimeStore& runtime() { return runtime_; }

  // With Options::etcd: the etcd revision of the applied configuration this replica serves.
  int64_t etcd_revision() const;
  // With Options::etcd: stops following other replicas' changes (at shutdown, before what
  // the OnSwap listeners use goes away).
  void StopFollowing();

 private:
  explicit ConfigStore(Options options);

  // Validates and compiles `files` + `applied`; swaps it in unless `dry_run`. Caller holds mu_.
  // `weights_only`: the change is a canary's weight step, not an edit (no lock checks).
  ChangeResult Commit(config::ConfigSet files, config::ConfigSet applied,
                      config::Diagnostics diagnostics, bool dry_run, bool persist,
                      bool weights_only = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Persist(const config::ConfigSet& applied, uint64_t version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // etcd: writes the difference between applied_ and `applied` if nobody changed it since
  // this replica read it (AbortedError otherwise).
  absl::Status PersistToEtcd(const config::ConfigSet& applied, uint64_t version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // etcd: takes in another replica's change.
  void RefreshFromEtcd();
  std::string FilesFingerprint() const;

  Options options_;
  routing::RuntimeStore runtime_;
  mutable absl::Mutex mu_;
  config::ConfigSet files_ ABSL_GUARDED_BY(mu_);
  config::ConfigSet applied_ ABSL_GUARDED_BY(mu_);
  std::string files_fingerprint_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::function<void(const routing::Snapshot&)>> listeners_ ABSL_GUARDED_BY(mu_);
  std::vector<CanaryLock> canary_locks_ ABSL_GUARDED_BY(mu_);
  bool files_refused_ ABSL_GUARDED_BY(mu_) = false;  // the last file reload was not applied
  // Null where inotify is not available (the settle delay alone then decides).
  absl::Mutex writers_mu_;
  std::unique_ptr<OpenWriters> writers_ ABSL_GUARDED_BY(writers_mu_);
  SnapshotCell current_;
  // The mod revision of PREFIX/version that applied_ reflects: what a change compares.
  int64_t etcd_version_revision_ ABSL_GUARDED_BY(mu_) = 0;
  // Last: it is stopped first, before what its thread uses goes away.
  std::unique_ptr<EtcdClient::Watch> etcd_watch_;
};

// Every resource of `layer` as (key, resource yaml, location).
std::vector<StoredResource> ResourcesOf(const config::ConfigSet& layer, absl::string_view source);

// `base` with every resource of `overlay` replacing the one of the same key or appended.
config::ConfigSet Overlay(const config::ConfigSet& base, const config::ConfigSet& overlay);

}  // namespace sluice::store
