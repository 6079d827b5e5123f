#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace sluice {

// Where a text stops being UTF-8.
struct InvalidUtf8 {
  size_t offset = 0;  // of the first byte that is not part of a well-formed sequence
  int line = 1;       // 1-based line of that byte
  uint8_t byte = 0;

  // "not valid UTF-8 (byte 0xff at offset 48)"
  std::string ToString() const;
};

// The first byte of `text` that does not belong to well-formed UTF-8 (RFC 3629: no overlong
// forms, no surrogates, nothing past U+10FFFF), or nullopt when it is all UTF-8.
std::optional<InvalidUtf8> FindInvalidUtf8(absl::string_view text);

}  // namespace sluice
