#include "lib/config/duration.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace sluice::config {

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text) {
  const std::string trimmed(absl::StripAsciiWhitespace(text));
  if (trimmed.empty()) return absl::InvalidArgumentError("empty duration");
  // absl::ParseDuration accepts "inf" and a leading sign; Istio accepts neither.
  if (trimmed[0] == '-' || trimmed[0] == '+' || trimmed.find("inf") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid duration \"", trimmed, "\": must be a non-negative duration"));
  }
  absl::Duration d;
  if (!absl::ParseDuration(trimmed, &d)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid duration \"", trimmed, "\": expected a number with a unit, e.g. 1.5s or 250ms"));
  }
  return d;
}

std::string CheckIstioDuration(absl::Duration d) {
  if (d < absl::Milliseconds(1)) return "must be at least 1ms";
  if (d % absl::Milliseconds(1) != absl::ZeroDuration()) {
    return "must be a whole number of milliseconds";
  }
  return "";
}

std::string FormatDuration(absl::Duration d) { return absl::FormatDuration(d); }

}  // namespace sluice::config
