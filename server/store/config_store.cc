#include "server/store/config_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/common/files.h"
#include "lib/common/log.h"
#include "lib/config/host_names.h"
#include "server/config/loader.h"
#include "server/config/validation.h"

namespace sluice::store {
namespace {

namespace fs = std::filesystem;

constexpr char kAppliedFile[] = "applied.yaml";
constexpr char kVersionFile[] = "version";
constexpr char kEtcdResources[] = "resources/";
constexpr char kEtcdVersion[] = "version";

std::string EtcdKeyOf(const EtcdClient& etcd, const ResourceKey& key) {
  return absl::StrCat(etcd.location().prefix, kEtcdResources, key.kind, "/", key.namespace_name,
                      "/", key.name);
}

// The applied layer and version as etcd holds them.
struct EtcdState {
  config::ConfigSet applied;
  config::Diagnostics diagnostics;
  uint64_t version = 0;
  int64_t version_revision = 0;  // PREFIX/version's mod revision; 0: nothing applied yet
};

// Why a change did not go into etcd, and whether it may still: a request that reached etcd
// and timed out may yet be committed once etcd has a majority again.
std::string EtcdRefusal(const absl::Status& s) {
  if (absl::IsAborted(s)) return std::string(s.message());  // the conflict
  if (absl::IsUnavailable(s)) {
    return absl::StrCat("could not persist the change: ", s.message(), "; nothing was applied");
  }
  return absl::StrCat(
      "could not persist the change: ", s.message(),
      "; this replica did not apply it, but etcd may still commit it once a majority of its "
      "members answers again (every replica then takes it in): check with `sluicectl get` "
      "before applying again");
}

absl::StatusOr<EtcdState> ReadEtcdState(EtcdClient& etcd) {
  // One range over the whole prefix: the resources and the version at the same revision.
  absl::StatusOr<EtcdClient::Range> range = etcd.GetPrefix(etcd.location().prefix);
  if (!range.ok()) return range.status();
  EtcdState state;
  const std::string version_key = etcd.location().prefix + kEtcdVersion;
  const std::string resources = etcd.location().prefix + kEtcdResources;
  for (const EtcdKeyValue& kv : range->kvs) {
    if (kv.key == version_key) {
      if (!absl::SimpleAtoi(kv.value, &state.version)) {
        return absl::DataLossError(
            absl::StrCat(version_key, " in etcd holds \"", kv.value, "\", not a version"));
      }
      state.version_revision = kv.mod_revision;
    } else if (absl::StartsWith(kv.key, resources)) {
      config::ParseYaml(kv.value, absl::StrCat("etcd:", kv.key), state.applied, state.diagnostics);
    }
  }
  return state;
}

template <typename T>
void OverlayKind(std::vector<T>& into, const std::vector<T>& overlay) {
  for (const T& item : overlay) {
    auto same = std::find_if(into.begin(), into.end(), [&](const T& existing) {
      return existing.meta.name == item.meta.name &&
             existing.meta.namespace_name == item.meta.namespace_name;
    });
    if (same != into.end()) {
      *same = item;
    } else {
      into.push_back(item);
    }
  }
}

template <typename T>
void Collect(const std::vector<T>& items, const char* kind, absl::string_view source,
             std::vector<StoredResource>& out) {
  for (const T& item : items) {
    out.push_back(StoredResource{ResourceKey{kind, item.meta.namespace_name, item.meta.name},
                                 source.empty() ? item.meta.location.file : std::string(source),
                                 item.meta.yaml});
  }
}

template <typename T>
bool EraseKey(std::vector<T>& items, const ResourceKey& key) {
  const size_t before = items.size();
  std::erase_if(items, [&](const T& item) {
    return item.meta.name == key.name && item.meta.namespace_name == key.namespace_name;
  });
  return items.size() != before;
}

bool EraseFrom(config::ConfigSet& set, const ResourceKey& key) {
  if (key.kind == "VirtualService") return EraseKey(set.virtual_services, key);
  if (key.kind == "DestinationRule") return EraseKey(set.destination_rules, key);
  if (key.kind == "ServiceEntry") return EraseKey(set.service_entries, key);
  if (key.kind == "WorkloadEntry") return EraseKey(set.workload_entries, key);
  if (key.kind == "Canary") return EraseKey(set.canaries, key);
  return false;
}

}  // namespace

std::string ResourceKey::ToString() const {
  return absl::StrCat(kind, "/", namespace_name, "/", name);
}

std::vector<StoredResource> ResourcesOf(const config::ConfigSet& layer, absl::string_view source) {
  std::vector<StoredResource> out;
  Collect(layer.virtual_services, "VirtualService", source, out);
  Collect(layer.destination_rules, "DestinationRule", source, out);
  Collect(layer.service_entries, "ServiceEntry", source, out);
  Collect(layer.workload_entries, "WorkloadEntry", source, out);
  Collect(layer.canaries, "Canary", source, out);
  return out;
}

config::ConfigSet Overlay(const config::ConfigSet& base, const config::ConfigSet& overlay) {
  config::ConfigSet out = base;
  OverlayKind(out.virtual_services, overlay.virtual_services);
  OverlayKind(out.destination_rules, overlay.destination_rules);
  OverlayKind(out.service_entries, overlay.service_entries);
  OverlayKind(out.workload_entries, overlay.workload_entries);
  OverlayKind(out.canaries, overlay.canaries);
  return out;
}

ConfigStore::ConfigStore(Options options) : options_(std::move(options)) {
  options_.compile.runtime_store = &runtime_;
}

absl::StatusOr<std::unique_ptr<ConfigStore>> ConfigStore::Open(Options options) {
  std::unique_ptr<ConfigStore> store(new ConfigStore(std::move(options)));
  const Options& opts = store->options_;
  config::Diagnostics diagnostics;
  config::ConfigSet files;
  if (!opts.config_paths.empty()) {
    config::LoadResult loaded = config::LoadPaths(opts.config_paths);
    diagnostics.Append(loaded.diagnostics);
    files = std::move(loaded.config);
  }
  config::ConfigSet applied;
  uint64_t version = 0;
  if (!opts.state_dir.empty()) {
    std::error_code ec;
    const bool created = fs::create_directories(opts.state_dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("state directory ", opts.state_dir, ": ", ec.message()));
    }
    // Applied configuration and canary state are the server's alone: 0700, files 0600.
    if (created) {
      fs::permissions(opts.state_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
    } else if ((fs::status(opts.state_dir, ec).permissions() &
                (fs::perms::group_all | fs::perms::others_all)) != fs::perms::none) {
      LogWarning("state directory ", opts.state_dir,
                 " is open to other users; chmod 700 it (files written from now on are 0600)");
    }
    const fs::path applied_file = fs::path(opts.state_dir) / kAppliedFile;
    if (fs::exists(applied_file)) {
      config::ParseYaml(ReadFile(applied_file), applied_file.string(), applied, diagnostics);
    }
    const std::string stored_version = ReadFile(fs::path(opts.state_dir) / kVersionFile);
    if (!stored_version.empty() && !absl::SimpleAtoi(stored_version, &version)) version = 0;
  }
  int64_t etcd_version_revision = 0;
  if (opts.etcd != nullptr) {
    absl::StatusOr<EtcdState> state = ReadEtcdState(*opts.etcd);
    if (!state.ok()) return state.status();
    applied = std::move(state->applied);
    diagnostics.Append(state->diagnostics);
    // The first commit below adds one: every replica serves the stored version under the
    // stored version's number.
    version = state->version == 0 ? 0 : state->version - 1;
    etcd_version_revision = state->version_revision;
  }
  if (!opts.config_paths.empty()) {
    absl::StatusOr<std::unique_ptr<OpenWriters>> writers = OpenWriters::Create(opts.config_paths);
    if (writers.ok()) {
      absl::MutexLock lock(&store->writers_mu_);
      store->writers_ = *std::move(writers);
    } else {
      LogWarning("config files: ", writers.status().message(),
                 "; a changed file is read once it has settled");
    }
  }
  absl::MutexLock lock(&store->mu_);
  store->version_ = version;
  store->etcd_version_revision_ = etcd_version_revision;
  store->files_fingerprint_ = store->FilesFingerprint();
  ChangeResult result = store->Commit(std::move(files), std::move(applied), std::move(diagnostics),
                                      /*dry_run=*/false, /*persist=*/false);
  if (!result.applied) {
    std::string problems;
    for (const config::Diagnostic& d : result.diagnostics.Filter(config::Severity::kError)) {
      absl::StrAppend(&problems, "\n  ", d.ToString());
    }
    return absl::InvalidArgumentError(absl::StrCat("the configuration is not valid:", problems));
  }
  for (const config::Diagnostic& d : result.diagnostics.all()) {
    if (d.severity == config::Severity::kWarning) LogWarning(d.ToString());
  }
  if (opts.etcd != nullptr && opts.follow_etcd) {
    // Every change after the one read, by whichever replica: each writes the version key
    // (the rest of the prefix, canary progress and ejections, changes far more often).
    ConfigStore* self = store.get();
    store->etcd_watch_ =
        opts.etcd->WatchPrefix(opts.etcd->location().prefix + kEtcdVersion, etcd_version_revision,
                               [self](int64_t) { self->RefreshFromEtcd(); });
  }
  return store;
}

int64_t ConfigStore::etcd_revision() const {
  absl::MutexLock lock(&mu_);
  return etcd_version_revision_;
}

void ConfigStore::StopFollowing() { etcd_watch_.reset(); }

void ConfigStore::RefreshFromEtcd() {
  // The watch has moved past this change: a failed read is retried here, or this replica
  // would stay behind (and refuse every change as a conflict) until the next one.
  absl::StatusOr<EtcdState> state = ReadEtcdState(*options_.etcd);
  for (int attempt = 1; !state.ok() && attempt < 20; ++attempt) {
    if (attempt == 1) {
      LogWarning("could not read the configuration another replica changed (retrying): ",
                 state.status().message());
    }
    absl::SleepFor(absl::Milliseconds(250));
    state = ReadEtcdState(*options_.etcd);
  }
  if (!state.ok()) {
    LogError("could not read the configuration another replica changed; still serving version ",
             version(), " until the next change: ", state.status().message());
    return;
  }
  absl::MutexLock lock(&mu_);
  // This replica's own change, or one it has already taken in.
  if (state->version_revision <= etcd_version_revision_) return;
  // Under the stored version's number, unless this replica's own steps (canary weights, file
  // reloads) have gone past it: versions never go back.
  const uint64_t before = version_;
  version_ = std::max(version_, state->version == 0 ? 0 : state->version - 1);
  // Validated where it was made: a canary's hold on its split is not checked again here (this
  // replica's view of the canary may lag the leader's by moments).
  ChangeResult result = Commit(files_, std::move(state->applied), std::move(state->diagnostics),
                               /*dry_run=*/false, /*persist=*/false, /*weights_only=*/true);
  if (!result.applied) {
    version_ = before;
    // etcd_version_revision_ stays: this replica's changes are refused as conflicts rather
    // than written over a configuration it could not validate.
    for (const config::Diagnostic& d : result.diagnostics.Filter(config::Severity::kError)) {
      LogError("the configuration in etcd at revision ", state->version_revision,
               " is not valid with this replica's --config files; still serving version ", version_,
               ": ", d.ToString());
    }
    return;
  }
  etcd_version_revision_ = state->version_revision;
  LogInfo("configuration version ", result.version, " from etcd revision ",
          state->version_revision);
}

namespace {

// One route's declared split between a canary's two subsets.
struct DeclaredSplit {
  std::string virtual_service;  // "default/shop"
  std::string route;            // "VirtualService default/shop spec.http[0]", for messages
  config::SourceLocation location;
  int64_t stable = 0;
  int64_t canary = 0;
  // Where a route sits in its list does not matter: moving it changes no weight.
  auto Key() const { return std::tie(virtual_service, stable, canary); }
};

// The splits of `lock`'s subsets in `set`, in a canonical order.
std::vector<DeclaredSplit> DeclaredSplits(const config::ConfigSet& set,
                                          const ConfigStore::CanaryLock& lock) {
  std::vector<DeclaredSplit> out;
  for (const config::VirtualService& vs : set.virtual_services) {
    for (size_t i = 0; i < vs.http.size(); ++i) {
      DeclaredSplit split;
      bool stable = false, canary = false;
      for (const config::HTTPRouteDestination& d : vs.http[i].route) {
        if (config::ResolveHost(d.destination.host, vs.meta.namespace_name) != lock.host) continue;
        if (d.destination.subset == lock.stable_subset && !stable) {
          stable = true;
          split.stable = d.weight;
        } else if (d.destination.subset == lock.canary_subset && !canary) {
          canary = true;
          split.canary = d.weight;
        }
      }
      if (!stable || !canary) continue;
      split.virtual_service = absl::StrCat(vs.meta.namespace_name, "/", vs.meta.name);
      split.route = absl::StrCat("VirtualService ", split.virtual_service, " spec.http[", i, "]");
      split.location = vs.http[i].location;
      out.push_back(std::move(split));
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const DeclaredSplit& a, const DeclaredSplit& b) {
    return a.Key() < b.Key();
  });
  return out;
}

// Why `after` is not the split `before` was, for the lock's message; "" when it is.
std::string SplitChange(const std::vector<DeclaredSplit>& before,
                        const std::vector<DeclaredSplit>& after, config::SourceLocation* where,
                        std::string* route) {
  for (size_t i = 0; i < after.size(); ++i) {
    if (i >= before.size() || after[i].Key() != before[i].Key()) {
      *where = after[i].location;
      *route = after[i].route;
      return "changes the weights of";
    }
  }
  if (after.size() < before.size()) {
    *where = {};
    *route = before[after.size()].route;
    return "removes the route that holds";
  }
  return "";
}

}  // namespace

ChangeResult ConfigStore::SetCanaryWeights(std::vector<routing::CanaryWeight> weights,
                                           std::vector<CanaryLock> locks) {
  absl::MutexLock lock(&mu_);
  if (locks != canary_locks_ && files_refused_) {
    // The files were refused, perhaps for editing a split a canary held: read them again.
    files_fingerprint_.clear();
  }
  canary_locks_ = std::move(locks);
  if (weights == options_.compile.canary_weights) {
    // Only the locks changed (a phase): routing is the same, so no new version.
    ChangeResult unchanged;
    unchanged.applied = true;
    unchanged.version = version_;
    return unchanged;
  }
  options_.compile.canary_weights = std::move(weights);
  return Commit(files_, applied_, {}, /*dry_run=*/false, /*persist=*/false,
                /*weights_only=*/true);
}

ChangeResult ConfigStore::Commit(config::ConfigSet files, config::ConfigSet applied,
                                 config::Diagnostics diagnostics, bool dry_run, bool persist,
                                 bool weights_only) {
  ChangeResult result;
  result.version = version_;
  if (!diagnostics.HasErrors()) {
    config::ConfigSet effective = Overlay(files, applied);
    config::ValidateConfigSet(effective, diagnostics);
    if (!weights_only && !canary_locks_.empty()) {
      // A running canary owns its split's weights: an edit to them would be silently
      // overridden at the next step, so it is refused with what to do instead.
      const config::ConfigSet current = Overlay(files_, applied_);
      for (const CanaryLock& lock : canary_locks_) {
        const std::vector<DeclaredSplit> before = DeclaredSplits(current, lock);
        const std::vector<DeclaredSplit> after = DeclaredSplits(effective, lock);
        config::SourceLocation where;
        std::string route;
        const std::string change = SplitChange(before, after, &where, &route);
        if (change.empty()) continue;
        diagnostics.Error(
            where, route,
            absl::StrCat(change, " ", lock.host, "'s ", lock.stable_subset, "/", lock.canary_subset,
                         " split, which ", lock.description,
                         " drives; use `sluicectl canary set-weight|pause|rollback|promote`, "
                         "or delete the Canary first"));
      }
    }
    if (!diagnostics.HasErrors()) {
      auto snapshot = routing::CompileSnapshot(std::move(effective), version_ + 1, &diagnostics,
                                               options_.compile);
      if (!snapshot.ok()) {
        diagnostics.Error({}, "", snapshot.status().message());
      } else if (!dry_run) {
        if (persist && options_.etcd != nullptr) {
          if (absl::Status s = PersistToEtcd(applied, version_ + 1); !s.ok()) {
            diagnostics.Error({options_.etcd->location().ToString(), 0}, "", EtcdRefusal(s));
            result.diagnostics = std::move(diagnostics);
            return result;
          }
        } else if (persist && !options_.state_dir.empty()) {
          if (absl::Status s = Persist(applied, version_ + 1); !s.ok()) {
            diagnostics.Error({options_.state_dir, 0}, "",
                              absl::StrCat("could not persist the change: ", s.message()));
            result.diagnostics = std::move(diagnostics);
            return result;
          }
        } else if (!options_.state_dir.empty()) {
          // Versions never go back, even across a restart: gateways key route tables by
          // version, and canary steps and file reloads make versions too.
          if (absl::Status s = WriteFileAtomically(fs::path(options_.state_dir) / kVersionFile,
                                                   absl::StrCat(version_ + 1, "\n"));
              !s.ok()) {
            LogWarning("could not record configuration version ", version_ + 1, ": ", s.message());
          }
        }
        files_ = std::move(files);
        applied_ = std::move(applied);
        ++version_;
        // Listeners first: health state must know the new snapshot's clusters before the
        // first decision on it, or that decision's reports would find nothing.
        for (const auto& listener : listeners_) listener(**snapshot);
        current_.Store(*snapshot);
        result.applied = true;
        result.version = version_;
      } else {
        result.version = version_ + 1;
      }
    }
  }
  result.diagnostics = std::move(diagnostics);
  return result;
}

absl::Status ConfigStore::PersistToEtcd(const config::ConfigSet& applied, uint64_t version) {
  EtcdClient& etcd = *options_.etcd;
  std::vector<EtcdWrite> writes;
  const std::vector<StoredResource> before = ResourcesOf(applied_, "applied");
  const std::vector<StoredResource> after = ResourcesOf(applied, "applied");
  for (const StoredResource& r : after) {
    auto same = std::find_if(before.begin(), before.end(),
                             [&](const StoredResource& b) { return b.key == r.key; });
    if (same == before.end() || same->yaml != r.yaml) {
      writes.push_back(EtcdWrite::Put(EtcdKeyOf(etcd, r.key), r.yaml));
    }
  }
  for (const StoredResource& b : before) {
    if (std::none_of(after.begin(), after.end(),
                     [&](const StoredResource& r) { return r.key == b.key; })) {
      writes.push_back(EtcdWrite::Delete(EtcdKeyOf(etcd, b.key)));
    }
  }
  const std::string version_key = etcd.location().prefix + kEtcdVersion;
  writes.push_back(EtcdWrite::Put(version_key, absl::StrCat(version)));
  absl::StatusOr<EtcdClient::TxnResult> txn =
      etcd.CompareAndWrite(version_key, etcd_version_revision_, writes);
  if (!txn.ok()) return txn.status();
  if (!txn->succeeded) {
    return absl::AbortedError(absl::StrCat(
        "conflict: another sluice-server replica changed the configuration in etcd after this "
        "one read it (at revision ",
        etcd_version_revision_,
        "); nothing was applied. This replica takes in that change within moments: run the "
        "command again"));
  }
  etcd_version_revision_ = txn->revision;
  return absl::OkStatus();
}

absl::Status ConfigStore::Persist(const config::ConfigSet& applied, uint64_t version) {
  std::vector<std::string> docs;
  for (const StoredResource& r : ResourcesOf(applied, "applied")) docs.push_back(r.yaml);
  const fs::path dir(options_.state_dir);
  if (absl::Status s =
          WriteFileAtomically(dir / kAppliedFile, absl::StrJoin(docs, "\n---\n") + "\n");
      !s.ok()) {
    return s;
  }
  return WriteFileAtomically(dir / kVersionFile, absl::StrCat(version, "\n"));
}

ChangeResult ConfigStore::Apply(const std::vector<File>& files, bool dry_run) {
  config::ConfigSet incoming;
  config::Diagnostics diagnostics;
  for (const File& file : files) {
    config::ParseYaml(file.yaml, file.name.empty() ? "<apply>" : file.name, incoming, diagnostics);
  }
  if (incoming.size() == 0 && !diagnostics.HasErrors()) {
    diagnostics.Error({files.empty() ? "<apply>" : files.front().name, 0}, "",
                      "holds no resource sluice reads");
  }
  if (options_.max_apply_resources > 0 && incoming.size() > options_.max_apply_resources) {
    ChangeResult refused;
    refused.refused = absl::InvalidArgumentError(
        absl::StrCat("the change holds ", incoming.size(), " resources; at most ",
                     options_.max_apply_resources, " may be applied at once"));
    refused.version = version();
    return refused;
  }
  std::vector<std::string> changed;
  for (const StoredResource& r : ResourcesOf(incoming, "applied"))
    changed.push_back(r.key.ToString());

  absl::MutexLock lock(&mu_);
  ChangeResult result = Commit(files_, Overlay(applied_, incoming), std::move(diagnostics), dry_run,
                               /*persist=*/true);
  if (result.applied || dry_run) result.changed = std::move(changed);
  return result;
}

ChangeResult ConfigStore::Delete(const ResourceKey& key) {
  absl::MutexLock lock(&mu_);
  config::ConfigSet applied = applied_;
  if (!EraseFrom(applied, key)) {
    ChangeResult result;
    result.version = version_;
    config::ConfigSet files = files_;
    if (EraseFrom(files, key)) {
      result.diagnostics.Error({}, "",
                               absl::StrCat(key.ToString(),
                                            " comes from a configuration file; edit or "
                                            "remove it there"));
    } else {
      result.diagnostics.Error({}, "", absl::StrCat(key.ToString(), " not found"));
    }
    return result;
  }
  ChangeResult result = Commit(files_, std::move(applied), {}, false, /*persist=*/true);
  if (result.applied) result.changed.push_back(key.ToString());
  return result;
}

std::string ConfigStore::FilesFingerprint() const {
  std::string out;
  for (const std::string& path : options_.config_paths) {
    std::error_code ec;
    auto add = [&](const fs::path& p) {
      std::error_code e;
      const auto size = fs::file_size(p, e);
      const auto mtime = fs::last_write_time(p, e).time_since_epoch().count();
      absl::StrAppend(&out, p.string(), ":", size, ":", mtime, ";");
    };
    if (fs::is_directory(path, ec)) {
      // The files the loader reads; a ConfigMap update changes them through their symlinks.
      for (const std::string& f : config::ConfigFilesIn(path)) add(f);
    } else {
      add(path);
    }
  }
  return out;
}

std::optional<ChangeResult> ConfigStore::ReloadFilesIfChanged() {
  if (options_.config_paths.empty()) return std::nullopt;
  std::string fingerprint = FilesFingerprint();
  {
    absl::MutexLock lock(&mu_);
    if (fingerprint == files_fingerprint_) return std::nullopt;
  }
  // Settle: a file being written changes again within moments. Read it only once it has
  // stayed the same for the settle delay, and only if it did not change while being read;
  // otherwise the next poll tries again.
  absl::SleepFor(options_.settle);
  if (FilesFingerprint() != fingerprint) return std::nullopt;
  {
    // A writer that paused longer than the settle delay still has the file open.
    absl::MutexLock lock(&writers_mu_);
    if (writers_ != nullptr && writers_->AnyOpen()) return std::nullopt;
  }
  config::LoadResult loaded = config::LoadPaths(options_.config_paths);
  if (FilesFingerprint() != fingerprint) return std::nullopt;
  absl::MutexLock lock(&mu_);
  if (fingerprint == files_fingerprint_) return std::nullopt;
  files_fingerprint_ = fingerprint;
  ChangeResult result = Commit(std::move(loaded.config), applied_, std::move(loaded.diagnostics),
                               false, /*persist=*/false);
  files_refused_ = !result.applied;
  return result;
}

std::vector<StoredResource> ConfigStore::List(absl::string_view kind) const {
  absl::MutexLock lock(&mu_);
  std::vector<StoredResource> out;
  for (StoredResource& r : ResourcesOf(Overlay(files_, applied_), "")) {
    if (!kind.empty() && r.key.kind != kind) continue;
    out.push_back(std::move(r));
  }
  // Mark which ones came through the admin API.
  const std::vector<StoredResource> applied = ResourcesOf(applied_, "applied");
  for (StoredResource& r : out) {
    for (const StoredResource& a : applied) {
      if (a.key == r.key) r.source = "applied";
    }
  }
  return out;
}

std::optional<StoredResource> ConfigStore::Get(const ResourceKey& key) const {
  for (StoredResource& r : List(key.kind)) {
    if (r.key == key) return std::move(r);
  }
  return std::nullopt;
}

void ConfigStore::OnSwap(std::function<void(const routing::Snapshot&)> listener) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(std::move(listener));
  listeners_.back()(*current_.Load());
}

}  // namespace sluice::store
