#pragma once

// Every change made through AdminService, and every refused attempt at one: who, what, when,
// the version before and after, and the outcome. Appended as JSON lines to a file (--audit-log)
// and kept in memory for `sluicectl history`; counted by identity, action and outcome in
// sluice_admin_changes_total.

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"
#include "sluice/v1/admin.pb.h"

namespace sluice::security {

class AuditLog {
 public:
  struct Options {
    std::string path;    // the JSON lines file; empty: memory only
    size_t keep = 1000;  // entries kept for History, read back from the file at start
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };
  // Opens (creating it 0600) the file and reads its last `keep` entries back.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(Options options,
                                                        prometheus::Registry& registry);
  ~AuditLog();

  // Stamps `entry` with the time, appends it to the file (one write, flushed to disk: changes
  // are rare and the record must survive a crash that follows) and to the recent entries.
  void Record(v1::AuditEntry entry);

  // Counts a change in sluice_admin_changes_total without recording it (refusals of
  // unidentified callers beyond one a second).
  void CountOnly(absl::string_view identity, absl::string_view action, absl::string_view outcome);

  // The latest `limit` entries, oldest first.
  std::vector<v1::AuditEntry> Recent(size_t limit) const;

  // One entry as its file line (without the newline), and back.
  static std::string ToJsonLine(const v1::AuditEntry& entry);
  static absl::StatusOr<v1::AuditEntry> FromJsonLine(const std::string& line);

 private:
  AuditLog(Options options, prometheus::Family<prometheus::Counter>& changes)
      : options_(std::move(options)), changes_(changes) {}

  const Options options_;
  prometheus::Family<prometheus::Counter>& changes_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  std::deque<v1::AuditEntry> recent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::security
