#include "server/store/open_writers.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sluice::store {
namespace fs = std::filesystem;

namespace {
constexpr uint32_t kEvents = IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM;
}  // namespace

absl::StatusOr<std::unique_ptr<OpenWriters>> OpenWriters::Create(
    const std::vector<std::string>& config_paths, absl::Duration max_open) {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("inotify: ", std::strerror(errno)));
  std::unique_ptr<OpenWriters> writers(new OpenWriters(fd, max_open));
  auto watch = [&](const fs::path& folder, bool whole_folder,
                   const std::string& name) -> absl::Status {
    const int wd = inotify_add_watch(fd, folder.c_str(), kEvents | IN_ONLYDIR);
    if (wd < 0) {
      return absl::UnavailableError(
          absl::StrCat("inotify watch on ", folder.string(), ": ", std::strerror(errno)));
    }
    Watch& w = writers->watches_[wd];  // the same folder twice gives the same descriptor
    w.folder = folder.string();
    w.whole_folder = w.whole_folder || whole_folder;
    if (!name.empty()) w.names.insert(name);
    return absl::OkStatus();
  };
  for (const std::string& path : config_paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      if (absl::Status s = watch(path, true, ""); !s.ok()) return s;
      for (auto it = fs::recursive_directory_iterator(path, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_directory(ec)) {
          if (absl::Status s = watch(it->path(), true, ""); !s.ok()) return s;
        }
      }
    } else {
      const fs::path file(path);
      const fs::path folder = file.has_parent_path() ? file.parent_path() : fs::path(".");
      if (absl::Status s = watch(folder, false, file.filename().string()); !s.ok()) return s;
    }
  }
  return writers;
}

OpenWriters::~OpenWriters() { close(fd_); }

void OpenWriters::Drain(absl::Time now) {
  alignas(inotify_event) char buffer[16 * 1024];
  for (;;) {
    const ssize_t n = read(fd_, buffer, sizeof(buffer));
    if (n <= 0) return;  // EAGAIN: nothing more for now
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      if (event->mask & IN_Q_OVERFLOW) {
        open_.clear();  // events lost: the settle delay decides alone until the next ones
        continue;
      }
      auto found = watches_.find(event->wd);
      if (found == watches_.end() || event->len == 0) continue;
      const Watch& w = found->second;
      const absl::string_view name(event->name);  // NUL-padded to event->len
      if (!w.names.contains(name) &&
          !(w.whole_folder && !absl::StartsWith(name, ".") &&
            (absl::EndsWith(name, ".yaml") || absl::EndsWith(name, ".yml")))) {
        continue;  // not a file the loader reads
      }
      const std::string file = absl::StrCat(w.folder, "/", name);
      if (event->mask & IN_MODIFY) {
        open_[file] = now;
      } else {
        open_.erase(file);  // closed after writing, deleted, or renamed away
      }
    }
  }
}

bool OpenWriters::AnyOpen(absl::Time now) {
  Drain(now);
  for (const auto& [file, modified] : open_) {
    if (now - modified < max_open_) return true;
  }
  return false;
}

}  // namespace sluice::store
