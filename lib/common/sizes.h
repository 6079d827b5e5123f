#pragma once

// Sizes on command lines and in messages: "64k", "16m" in, "16 MiB" out.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace sluice {

// "65536", "64k", "16m" (binary multiples; "ki"/"mi" and upper case too). Nullopt for
// anything else, or a size past 2^64.
std::optional<uint64_t> ParseBytes(absl::string_view text);

// "16 MiB", "64 KiB", "19.1 MiB", "512 bytes": exact units when they fit, else one decimal.
std::string FormatBytes(uint64_t bytes);

// A size as a command-line flag (`ABSL_FLAG(sluice::ByteSize, max_request_body, ...)`): read
// by ParseBytes, printed back in the shortest form it reads ("16m", "64k", "1000").
struct ByteSize {
  uint64_t bytes = 0;

  friend bool operator==(const ByteSize&, const ByteSize&) = default;
};

bool AbslParseFlag(absl::string_view text, ByteSize* out, std::string* error);
std::string AbslUnparseFlag(const ByteSize& value);

}  // namespace sluice
