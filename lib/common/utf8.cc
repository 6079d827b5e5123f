#include "lib/common/utf8.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_format.h"

namespace sluice {
namespace {

// The offset of the first byte that is not part of a well-formed sequence, or npos.
size_t FirstInvalidByte(absl::string_view text) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    // The length of the sequence and the range its second byte must be in (which rules out
    // overlong forms, surrogates and code points past U+10FFFF, RFC 3629 section 4).
    size_t length = 0;
    uint8_t low = 0x80, high = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3;
      if (c == 0xe0) low = 0xa0;
      if (c == 0xed) high = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4;
      if (c == 0xf0) low = 0x90;
      if (c == 0xf4) high = 0x8f;
    } else {
      return i;
    }
    if (i + 1 >= n || p[i + 1] < low || p[i + 1] > high) return i;
    for (size_t k = 2; k < length; ++k) {
      if (i + k >= n || p[i + k] < 0x80 || p[i + k] > 0xbf) return i;
    }
    i += length;
  }
  return absl::string_view::npos;
}

}  // namespace

std::string InvalidUtf8::ToString() const {
  return absl::StrFormat("not valid UTF-8 (byte 0x%02x at offset %d)", byte, offset);
}

std::optional<InvalidUtf8> FindInvalidUtf8(absl::string_view text) {
  const size_t at = FirstInvalidByte(text);
  if (at == absl::string_view::npos) return std::nullopt;
  InvalidUtf8 found;
  found.offset = at;
  found.line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
  found.byte = static_cast<uint8_t>(text[at]);
  return found;
}

}  // namespace sluice
