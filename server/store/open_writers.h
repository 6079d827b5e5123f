#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice::store {

// Which configuration files some process is writing right now, as inotify tells: a file
// modified (IN_MODIFY) and not yet closed after writing (IN_CLOSE_WRITE). `cat new > vs.yaml`
// that pauses mid-write keeps vs.yaml here until it closes the file, however long the pause,
// where a settle delay alone only guesses. Directories are watched (a configured file's
// folder, a configured folder and its subfolders), so a file replaced by rename stays
// watched; only the files the loader reads count. A file modified and then left open with no change
// for `max_open` is no longer counted (a writer that never closes must not hold the configuration
// back for ever). Not thread-safe.
class OpenWriters {
 public:
  // Fails where inotify is not available; the caller then relies on its settle delay.
  static absl::StatusOr<std::unique_ptr<OpenWriters>> Create(
      const std::vector<std::string>& config_paths, absl::Duration max_open = absl::Seconds(30));
  OpenWriters(const OpenWriters&) = delete;
  OpenWriters& operator=(const OpenWriters&) = delete;
  ~OpenWriters();

  // Reads the events so far; true while a watched file is being written.
  bool AnyOpen(absl::Time now = absl::Now());

 private:
  OpenWriters(int fd, absl::Duration max_open) : fd_(fd), max_open_(max_open) {}
  void Drain(absl::Time now);

  const int fd_;
  const absl::Duration max_open_;
  // What a watch reports on: a configured folder (or one of its subfolders), where every
  // file the loader reads counts (YAML, not hidden), or a configured file's folder, where
  // only the configured files count (not the logs or anything else written beside them).
  struct Watch {
    std::string folder;
    bool whole_folder = false;
    absl::flat_hash_set<std::string> names;  // !whole_folder: the configured files' names
  };
  absl::flat_hash_map<int, Watch> watches_;  // by watch descriptor
  // "folder/name" -> when it was last modified, for files written and not yet closed.
  absl::flat_hash_map<std::string, absl::Time> open_;
};

}  // namespace sluice::store
