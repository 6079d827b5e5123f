#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace sluice::gateway::http {

// An ordered multimap of HTTP fields (request or response headers, or trailers) that owns
// its bytes.
//
// Every name and value lives in one flat std::string and the entries are offsets into it, so
// a map costs two buffers however many fields it holds. The codec keeps one map per
// connection and Clear()s it between messages: Clear() keeps both buffers' capacity, so a
// steady stream of similar messages stops allocating after the first few.
//
// Names compare case-insensitively (ASCII only, as field names are tokens) and are stored as
// received: the encoder writes them back byte for byte, so a message round-trips unchanged.
//
// Remove() and Set() only mark the old entries dead; their bytes stay in the storage until
// Clear(). That keeps removal cheap and every live view stable, at the price that a map
// edited over and over without ever being cleared keeps growing. The proxy's maps are
// cleared once per message, so this does not happen on its path.
//
// Views handed out by Get() and ForEach() stay valid until the next Clear() or the next call
// that appends (Add, Set, the incremental builders). Not thread-safe.
class HeaderMap {
 public:
  // Appends a field, after any with the same name. `name` and `value` may view this map's
  // own storage (for example Set("host", *Get("x-forwarded-host"))).
  void Add(absl::string_view name, absl::string_view value);

  // Removes every field called `name`, then appends one.
  void Set(absl::string_view name, absl::string_view value);

  // Removes every field called `name`; returns how many there were.
  size_t Remove(absl::string_view name);

  // The value of the first field called `name`.
  std::optional<absl::string_view> Get(absl::string_view name) const;

  // How many fields are called `name`.
  size_t Count(absl::string_view name) const;

  // Calls fn(name, value) for each live field, in order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const Entry& e : entries_) {
      if (!e.removed) fn(NameOf(e), ValueOf(e));
    }
  }

  // Live fields.
  size_t size() const { return live_; }
  bool empty() const { return live_ == 0; }

  // Sum of the lengths of the live fields' names and values.
  size_t byte_size() const;

  // Forgets every field; keeps the capacity of both buffers.
  void Clear();

  // Bytes reserved by the two buffers: lets a test prove that reuse stops allocating.
  size_t capacity_bytes() const {
    return storage_.capacity() + entries_.capacity() * sizeof(Entry);
  }

  // Same live fields in the same order, names compared byte for byte.
  bool operator==(const HeaderMap& other) const;

  // Incremental building, for a decoder that receives a field in pieces (a field can straddle
  // two reads). StartField() opens an empty field; the name's pieces come first, then the
  // value's; FinishValue() strips the value's trailing whitespace, which HTTP/1 parsers leave
  // in. Nothing else may be appended between StartField() and FinishValue().
  void StartField();
  void AppendToName(absl::string_view piece);
  void AppendToValue(absl::string_view piece);
  void FinishValue();

 private:
  struct Entry {
    size_t name_offset;
    size_t name_size;
    size_t value_offset;
    size_t value_size;
    bool removed;
  };

  absl::string_view NameOf(const Entry& e) const {
    return {storage_.data() + e.name_offset, e.name_size};
  }
  absl::string_view ValueOf(const Entry& e) const {
    return {storage_.data() + e.value_offset, e.value_size};
  }

  std::string storage_;
  std::vector<Entry> entries_;
  size_t live_ = 0;
};

}  // namespace sluice::gateway::http
