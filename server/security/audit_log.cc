#include "server/security/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "lib/common/log.h"

namespace sluice::security {

std::string AuditLog::ToJsonLine(const v1::AuditEntry& entry) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string line;
  (void)google::protobuf::util::MessageToJsonString(entry, &line, options);
  return line;
}

absl::StatusOr<v1::AuditEntry> AuditLog::FromJsonLine(const std::string& line) {
  v1::AuditEntry entry;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // lines written by a newer server
  const auto status = google::protobuf::util::JsonStringToMessage(line, &entry, options);
  if (!status.ok()) return absl::InvalidArgumentError(std::string(status.message()));
  return entry;
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(Options options,
                                                         prometheus::Registry& registry) {
  auto& changes = prometheus::BuildCounter()
                      .Name("sluice_admin_changes_total")
                      .Help(
                          "Changes asked of the admin API (apply, delete, canary actions) by "
                          "caller identity, action and outcome (applied, unchanged, invalid, "
                          "denied, failed)")
                      .Register(registry);
  std::unique_ptr<AuditLog> log(new AuditLog(std::move(options), changes));
  const std::string& path = log->options_.path;
  if (path.empty()) return log;
  {
    std::ifstream in(path);
    std::string line;
    int line_number = 0;
    absl::MutexLock lock(&log->mu_);
    while (std::getline(in, line)) {
      ++line_number;
      if (line.empty()) continue;
      absl::StatusOr<v1::AuditEntry> entry = FromJsonLine(line);
      if (!entry.ok()) {
        LogWarning("--audit-log ", path, ":", line_number, ": not an audit entry, skipped (",
                   entry.status().message(), ")");
        continue;
      }
      log->recent_.push_back(*std::move(entry));
      if (log->recent_.size() > log->options_.keep) log->recent_.pop_front();
    }
  }
  const int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--audit-log ", path, ": cannot open it for appending (", strerror(errno), ")"));
  }
  struct stat st {};
  if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
    LogWarning("--audit-log ", path, " can be read by others (mode ",
               absl::StrCat(absl::Hex(st.st_mode & 0777)), "); chmod 600 it");
  }
  absl::MutexLock lock(&log->mu_);
  log->fd_ = fd;
  return log;
}

AuditLog::~AuditLog() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) close(fd_);
}

namespace {

// What a caller sent may be anything: control characters (a terminal's escape sequences in
// `sluicectl history`) become '?', and an entry names at most 50 resources of 256 bytes.
void Sanitize(std::string& text) {
  if (text.size() > 256) text.resize(256);
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
}

void Sanitize(v1::AuditEntry& entry) {
  constexpr int kMaxResources = 50;
  if (entry.resources_size() > kMaxResources) {
    const int more = entry.resources_size() - kMaxResources;
    entry.mutable_resources()->DeleteSubrange(kMaxResources, more);
    entry.add_resources(absl::StrCat("... ", more, " more"));
  }
  for (std::string& r : *entry.mutable_resources()) Sanitize(r);
  Sanitize(*entry.mutable_identity());
  Sanitize(*entry.mutable_action());
  if (entry.detail().size() > 1024) entry.mutable_detail()->resize(1024);
  for (char& c : *entry.mutable_detail()) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
}

}  // namespace

void AuditLog::CountOnly(absl::string_view identity, absl::string_view action,
                         absl::string_view outcome) {
  changes_
      .Add({{"identity", std::string(identity)},
            {"action", std::string(action)},
            {"outcome", std::string(outcome)}})
      .Increment();
}

void AuditLog::Record(v1::AuditEntry entry) {
  Sanitize(entry);
  entry.set_time(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", options_.now(), absl::UTCTimeZone()));
  changes_
      .Add({{"identity", entry.identity()},
            {"action", entry.action()},
            {"outcome", entry.outcome()}})
      .Increment();
  const std::string line = ToJsonLine(entry) + "\n";
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) {
    // O_APPEND and one write: a line is never interleaved with another, even across processes.
    const ssize_t written = write(fd_, line.data(), line.size());
    if (written != static_cast<ssize_t>(line.size())) {
      LogError("--audit-log ", options_.path, ": cannot append (",
               written < 0 ? strerror(errno) : "short write", ")");
    } else if (fdatasync(fd_) != 0) {
      LogError("--audit-log ", options_.path, ": cannot flush (", strerror(errno), ")");
    }
  }
  recent_.push_back(std::move(entry));
  if (recent_.size() > options_.keep) recent_.pop_front();
}

std::vector<v1::AuditEntry> AuditLog::Recent(size_t limit) const {
  absl::MutexLock lock(&mu_);
  const size_t n = std::min(limit, recent_.size());
  return std::vector<v1::AuditEntry>(recent_.end() - static_cast<std::ptrdiff_t>(n), recent_.end());
}

}  // namespace sluice::security
