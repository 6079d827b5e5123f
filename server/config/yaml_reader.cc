#include "server/config/yaml_reader.h"

#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/config/duration.h"

namespace sluice::config {
namespace {

bool IsAbsent(const YAML::Node& node) { return !node.IsDefined() || node.IsNull(); }

const char* KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "null";
  }
}

// A plain (unquoted) scalar has the non-specific tag "?"; quoted ones have "!".
bool IsQuoted(const YAML::Node& node) { return node.Tag() == "!"; }

}  // namespace

SourceLocation ParseContext::At(const YAML::Node& node) const {
  int line = 0;
  if (node.IsDefined()) {
    const YAML::Mark mark = node.Mark();
    if (mark.line >= 0) line = mark.line + 1 + line_offset;
  }
  return SourceLocation{file, line};
}

std::string JoinPath(absl::string_view parent, absl::string_view key) {
  if (parent.empty()) return std::string(key);
  return absl::StrCat(parent, ".", key);
}

std::string IndexPath(absl::string_view parent, size_t index) {
  return absl::StrCat(parent, "[", index, "]");
}

MapReader::MapReader(const Field& field, const ParseContext& ctx) : self_(field), ctx_(ctx) {
  if (IsAbsent(field.node)) {
    ok_ = true;
    return;
  }
  if (!field.node.IsMap()) {
    ctx.Error(field.node, field.path,
              absl::StrCat("must be a mapping, found ", KindName(field.node)));
    return;
  }
  ok_ = true;
  for (const auto& kv : field.node) {
    if (!kv.first.IsScalar()) {
      ctx.Error(kv.first, field.path, "keys must be strings");
      continue;
    }
    std::string key = kv.first.Scalar();
    if (Find(key) != nullptr) {
      ctx.Error(kv.first, JoinPath(field.path, key), "duplicate key");
      continue;
    }
    entries_.push_back(Entry{std::move(key), kv.first, kv.second});
  }
}

MapReader::Entry* MapReader::Find(absl::string_view key) {
  for (Entry& e : entries_) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

bool MapReader::Has(absl::string_view key) const {
  for (const Entry& e : entries_) {
    if (e.key == key && !IsAbsent(e.value)) return true;
  }
  return false;
}

std::optional<Field> MapReader::Get(absl::string_view key) {
  Entry* e = Find(key);
  if (e == nullptr) return std::nullopt;
  e->claimed = true;
  if (IsAbsent(e->value)) return std::nullopt;
  return Field{e->value, JoinPath(self_.path, key)};
}

void MapReader::Ignore(absl::string_view key, absl::string_view notice) {
  Entry* e = Find(key);
  if (e == nullptr) return;
  e->claimed = true;
  if (!notice.empty() && !IsAbsent(e->value)) {
    ctx_.Notice(e->key_node, JoinPath(self_.path, key), notice);
  }
}

void MapReader::Finish() {
  if (finished_) return;
  finished_ = true;
  for (const Entry& e : entries_) {
    if (!e.claimed) ctx_.Error(e.key_node, JoinPath(self_.path, e.key), "unknown field");
  }
}

std::optional<std::string> ReadString(const Field& f, const ParseContext& ctx) {
  if (!f.node.IsScalar()) {
    ctx.Error(f.node, f.path, absl::StrCat("must be a string, found ", KindName(f.node)));
    return std::nullopt;
  }
  return f.node.Scalar();
}

std::optional<int64_t> ReadInt(const Field& f, const ParseContext& ctx, int64_t min, int64_t max) {
  int64_t value = 0;
  if (!f.node.IsScalar() || IsQuoted(f.node) || !absl::SimpleAtoi(f.node.Scalar(), &value)) {
    ctx.Error(f.node, f.path,
              absl::StrCat("must be an integer, found ",
                           f.node.IsScalar() ? absl::StrCat("\"", f.node.Scalar(), "\"")
                                             : std::string(KindName(f.node))));
    return std::nullopt;
  }
  if (value < min || value > max) {
    ctx.Error(f.node, f.path,
              max == std::numeric_limits<int64_t>::max()
                  ? absl::StrCat("must be at least ", min, ", found ", value)
                  : absl::StrCat("must be between ", min, " and ", max, ", found ", value));
    return std::nullopt;
  }
  return value;
}

std::optional<double> ReadDouble(const Field& f, const ParseContext& ctx) {
  double value = 0;
  if (!f.node.IsScalar() || IsQuoted(f.node) || !absl::SimpleAtod(f.node.Scalar(), &value) ||
      !std::isfinite(value)) {
    ctx.Error(f.node, f.path, "must be a number");
    return std::nullopt;
  }
  return value;
}

std::optional<bool> ReadBool(const Field& f, const ParseContext& ctx) {
  if (f.node.IsScalar() && !IsQuoted(f.node)) {
    if (f.node.Scalar() == "true") return true;
    if (f.node.Scalar() == "false") return false;
  }
  ctx.Error(f.node, f.path, "must be true or false");
  return std::nullopt;
}

std::optional<absl::Duration> ReadAnyDuration(const Field& f, const ParseContext& ctx) {
  if (!f.node.IsScalar()) {
    ctx.Error(f.node, f.path, "must be a duration string such as 10s or 250ms");
    return std::nullopt;
  }
  absl::StatusOr<absl::Duration> d = ParseDuration(f.node.Scalar());
  if (!d.ok()) {
    ctx.Error(f.node, f.path, d.status().message());
    return std::nullopt;
  }
  return *d;
}

std::optional<absl::Duration> ReadIstioDuration(const Field& f, const ParseContext& ctx) {
  std::optional<absl::Duration> d = ReadAnyDuration(f, ctx);
  if (!d) return std::nullopt;
  if (std::string problem = CheckIstioDuration(*d); !problem.empty()) {
    ctx.Error(f.node, f.path, problem);
    return std::nullopt;
  }
  return d;
}

void ForEachItem(const Field& f, const ParseContext& ctx,
                 const std::function<void(const Field&, size_t)>& item) {
  if (IsAbsent(f.node)) return;
  if (!f.node.IsSequence()) {
    ctx.Error(f.node, f.path, absl::StrCat("must be a list, found ", KindName(f.node)));
    return;
  }
  for (size_t i = 0; i < f.node.size(); ++i) item(Field{f.node[i], IndexPath(f.path, i)}, i);
}

void ForEachEntry(const Field& f, const ParseContext& ctx,
                  const std::function<void(const std::string& key, const Field&)>& entry) {
  if (IsAbsent(f.node)) return;
  if (!f.node.IsMap()) {
    ctx.Error(f.node, f.path, absl::StrCat("must be a mapping, found ", KindName(f.node)));
    return;
  }
  std::vector<std::string> seen;
  for (const auto& kv : f.node) {
    if (!kv.first.IsScalar()) {
      ctx.Error(kv.first, f.path, "keys must be strings");
      continue;
    }
    const std::string& key = kv.first.Scalar();
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      ctx.Error(kv.first, JoinPath(f.path, key), "duplicate key");
      continue;
    }
    seen.push_back(key);
    entry(key, Field{kv.second, JoinPath(f.path, key)});
  }
}

std::vector<std::string> ReadStringList(const Field& f, const ParseContext& ctx) {
  std::vector<std::string> out;
  ForEachItem(f, ctx, [&](const Field& item, size_t) {
    if (std::optional<std::string> s = ReadString(item, ctx)) out.push_back(*std::move(s));
  });
  return out;
}

std::vector<std::pair<std::string, std::string>> ReadStringMap(const Field& f,
                                                               const ParseContext& ctx) {
  std::vector<std::pair<std::string, std::string>> out;
  ForEachEntry(f, ctx, [&](const std::string& key, const Field& value) {
    if (std::optional<std::string> s = ReadString(value, ctx)) out.emplace_back(key, *s);
  });
  return out;
}

}  // namespace sluice::config
