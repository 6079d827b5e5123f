#include "lib/common/sizes.h"

#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace sluice {

std::optional<uint64_t> ParseBytes(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  absl::string_view value = lower;
  uint64_t unit = 1;
  if (absl::ConsumeSuffix(&value, "k") || absl::ConsumeSuffix(&value, "ki")) unit = 1024;
  if (absl::ConsumeSuffix(&value, "m") || absl::ConsumeSuffix(&value, "mi")) unit = 1024 * 1024;
  uint64_t n = 0;
  if (!absl::SimpleAtoi(value, &n) || n > std::numeric_limits<uint64_t>::max() / unit) {
    return std::nullopt;
  }
  return n * unit;
}

std::string FormatBytes(uint64_t bytes) {
  constexpr uint64_t kKiB = 1024, kMiB = 1024 * 1024, kGiB = kMiB * 1024;
  for (const auto& [unit, name] : {std::pair{kGiB, "GiB"}, {kMiB, "MiB"}, {kKiB, "KiB"}}) {
    if (bytes < unit) continue;
    if (bytes % unit == 0) return absl::StrCat(bytes / unit, " ", name);
    return absl::StrFormat("%.1f %s", static_cast<double>(bytes) / unit, name);
  }
  return absl::StrCat(bytes, bytes == 1 ? " byte" : " bytes");
}

bool AbslParseFlag(absl::string_view text, ByteSize* out, std::string* error) {
  const std::optional<uint64_t> n = ParseBytes(text);
  if (!n) {
    *error = "want a size in bytes such as 65536, 64k or 16m";
    return false;
  }
  out->bytes = *n;
  return true;
}

std::string AbslUnparseFlag(const ByteSize& value) {
  constexpr uint64_t kKiB = 1024, kMiB = 1024 * 1024;
  if (value.bytes != 0 && value.bytes % kMiB == 0) return absl::StrCat(value.bytes / kMiB, "m");
  if (value.bytes != 0 && value.bytes % kKiB == 0) return absl::StrCat(value.bytes / kKiB, "k");
  return absl::StrCat(value.bytes);
}

}  // namespace sluice
