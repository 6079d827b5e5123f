#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sluice::config {

// Parses a duration the way Istio's CRDs accept it: Go's `time.ParseDuration` syntax
// ("10s", "0.5s", "1m30s", "250ms", "3m"). Negative and infinite values are rejected.
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text);

// Istio's ValidateDuration: at least 1ms and a whole number of milliseconds. Returns the
// problem as a message fragment ("must be at least 1ms"), or an empty string when valid.
std::string CheckIstioDuration(absl::Duration d);

// "1.5s", "250ms", "3m0s"-style rendering for summaries and explain output.
std::string FormatDuration(absl::Duration d);

}  // namespace sluice::config
