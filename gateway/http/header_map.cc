#include "gateway/http/header_map.h"

#include <cstdint>

#include "absl/strings/match.h"

namespace sluice::gateway::http {
namespace {

// Whether `view` points into `buffer` (compared as integers: ordering pointers into different
// objects with < is unspecified).
bool Aliases(absl::string_view view, const std::string& buffer) {
  const auto begin = reinterpret_cast<uintptr_t>(buffer.data());
  const auto at = reinterpret_cast<uintptr_t>(view.data());
  return !view.empty() && at >= begin && at < begin + buffer.size();
}

}  // namespace

void HeaderMap::Add(absl::string_view name, absl::string_view value) {
  // Reserve first, then re-derive any view of our own storage: the appends below then cannot
  // reallocate under it.
  const char* old_base = storage_.data();
  const bool name_aliases = Aliases(name, storage_);
  const bool value_aliases = Aliases(value, storage_);
  storage_.reserve(storage_.size() + name.size() + value.size());
  if (name_aliases) name = {storage_.data() + (name.data() - old_base), name.size()};
  if (value_aliases) value = {storage_.data() + (value.data() - old_base), value.size()};

  const size_t name_offset = storage_.size();
  storage_.append(name.data(), name.size());
  const size_t value_offset = storage_.size();
  storage_.append(value.data(), value.size());
  entries_.push_back({name_offset, name.size(), value_offset, value.size(), false});
  ++live_;
}

void HeaderMap::Set(absl::string_view name, absl::string_view value) {
  // Remove() only marks entries dead, so views of their bytes stay valid for Add().
  Remove(name);
  Add(name, value);
}

size_t HeaderMap::Remove(absl::string_view name) {
  size_t removed = 0;
  for (Entry& e : entries_) {
    if (!e.removed && absl::EqualsIgnoreCase(NameOf(e), name)) {
      e.removed = true;
      ++removed;
    }
  }
  live_ -= removed;
  return removed;
}

std::optional<absl::string_view> HeaderMap::Get(absl::string_view name) const {
  for (const Entry& e : entries_) {
    if (!e.removed && absl::EqualsIgnoreCase(NameOf(e), name)) return ValueOf(e);
  }
  return std::nullopt;
}

size_t HeaderMap::Count(absl::string_view name) const {
  size_t count = 0;
  for (const Entry& e : entries_) {
    if (!e.removed && absl::EqualsIgnoreCase(NameOf(e), name)) ++count;
  }
  return count;
}

size_t HeaderMap::byte_size() const {
  size_t bytes = 0;
  for (const Entry& e : entries_) {
    if (!e.removed) bytes += e.name_size + e.value_size;
  }
  return bytes;
}

void HeaderMap::Clear() {
  storage_.clear();
  entries_.clear();
  live_ = 0;
}

bool HeaderMap::operator==(const HeaderMap& other) const {
  if (live_ != other.live_) return false;
  auto a = entries_.begin();
  auto b = other.entries_.begin();
  while (true) {
    while (a != entries_.end() && a->removed) ++a;
    while (b != other.entries_.end() && b->removed) ++b;
    if (a == entries_.end() || b == other.entries_.end()) {
      return a == entries_.end() && b == other.entries_.end();
    }
    if (NameOf(*a) != other.NameOf(*b) || ValueOf(*a) != other.ValueOf(*b)) return false;
    ++a;
    ++b;
  }
}

void HeaderMap::StartField() {
  entries_.push_back({storage_.size(), 0, storage_.size(), 0, false});
  ++live_;
}

void HeaderMap::AppendToName(absl::string_view piece) {
  Entry& e = entries_.back();
  storage_.append(piece.data(), piece.size());
  e.name_size += piece.size();
  e.value_offset = storage_.size();
}

void HeaderMap::AppendToValue(absl::string_view piece) {
  storage_.append(piece.data(), piece.size());
  entries_.back().value_size += piece.size();
}

void HeaderMap::FinishValue() {
  // The value is the last thing in the storage, so trimming it is a resize.
  Entry& e = entries_.back();
  while (e.value_size > 0) {
    const char c = storage_[e.value_offset + e.value_size - 1];
    if (c != ' ' && c != '\t') break;
    --e.value_size;
  }
  storage_.resize(e.value_offset + e.value_size);
}

}  // namespace sluice::gateway::http
