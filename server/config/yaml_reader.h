#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/config/diagnostics.h"
#include "yaml-cpp/yaml.h"

namespace sluice::config {

// What every parse function needs: the file being read and where findings go.
struct ParseContext {
  std::string file;
  Diagnostics* diagnostics = nullptr;
  // Lines before the document being read: yaml-cpp numbers lines within the text it is given.
  int line_offset = 0;

  SourceLocation At(const YAML::Node& node) const;
  void Error(const YAML::Node& node, absl::string_view path, absl::string_view message) const {
    diagnostics->Error(At(node), path, message);
  }
  void Warning(const YAML::Node& node, absl::string_view path, absl::string_view message) const {
    diagnostics->Warning(At(node), path, message);
  }
  void Notice(const YAML::Node& node, absl::string_view path, absl::string_view message) const {
    diagnostics->Notice(At(node), path, message);
  }
};

// A value found in a document, with its full field path.
struct Field {
  YAML::Node node;
  std::string path;
};

std::string JoinPath(absl::string_view parent, absl::string_view key);
std::string IndexPath(absl::string_view parent, size_t index);

// Reads one YAML mapping strictly: every key must be claimed with Get() or Ignore(); the rest
// are reported as unknown fields when the reader is finished (Finish() or destruction), the
// way Kubernetes' structural schemas reject them. A null node reads as an empty mapping.
class MapReader {
 public:
  MapReader(const Field& field, const ParseContext& ctx);
  MapReader(const MapReader&) = delete;
  MapReader& operator=(const MapReader&) = delete;
  ~MapReader() { Finish(); }

  // False when the node was not a mapping (already reported).
  bool ok() const { return ok_; }
  const Field& self() const { return self_; }

  // The value under `key`, if present and not null. Marks the key as known.
  std::optional<Field> Get(absl::string_view key);
  // Accepts `key` without reading it; when present and `notice` is not empty, says so once.
  void Ignore(absl::string_view key, absl::string_view notice = "");
  bool Has(absl::string_view key) const;

  // Reports unclaimed keys. Idempotent.
  void Finish();

 private:
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
    bool claimed = false;
  };
  Entry* Find(absl::string_view key);

  Field self_;
  const ParseContext& ctx_;
  std::vector<Entry> entries_;
  bool ok_ = false;
  bool finished_ = false;
};

// Typed readers. Each reports a type or range problem at the field and returns nullopt.
std::optional<std::string> ReadString(const Field& f, const ParseContext& ctx);
std::optional<int64_t> ReadInt(const Field& f, const ParseContext& ctx, int64_t min, int64_t max);
std::optional<double> ReadDouble(const Field& f, const ParseContext& ctx);
std::optional<bool> ReadBool(const Field& f, const ParseContext& ctx);
// A duration that Istio would accept for this field: at least 1ms, whole milliseconds.
std::optional<absl::Duration> ReadIstioDuration(const Field& f, const ParseContext& ctx);
// Any non-negative duration (for fields where 0s is legal, such as tcp.idleTimeout).
std::optional<absl::Duration> ReadAnyDuration(const Field& f, const ParseContext& ctx);
std::vector<std::string> ReadStringList(const Field& f, const ParseContext& ctx);
// Flat string-to-string map (labels, annotations).
std::vector<std::pair<std::string, std::string>> ReadStringMap(const Field& f,
                                                               const ParseContext& ctx);

// Calls `item` for each element of a sequence with its indexed path (`parent[3]`).
void ForEachItem(const Field& f, const ParseContext& ctx,
                 const std::function<void(const Field&, size_t)>& item);
// Calls `entry` for each key of a mapping whose keys are user data (header names and such).
void ForEachEntry(const Field& f, const ParseContext& ctx,
                  const std::function<void(const std::string& key, const Field&)>& entry);

}  // namespace sluice::config
