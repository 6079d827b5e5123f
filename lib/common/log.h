#pragma once

// A minimal structured logger: one line per event on stderr, with a UTC timestamp and a
// level. Abseil 20220623 has no absl/log, and the servers need only this.

#include <string_view>

#include "absl/strings/str_cat.h"

namespace sluice {

enum class LogLevel { kInfo, kWarning, kError };

void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void LogInfo(const Args&... args) {
  LogLine(LogLevel::kInfo, absl::StrCat(args...));
}
template <typename... Args>
void LogWarning(const Args&... args) {
  LogLine(LogLevel::kWarning, absl::StrCat(args...));
}
template <typename... Args>
void LogError(const Args&... args) {
  LogLine(LogLevel::kError, absl::StrCat(args...));
}

}  // namespace sluice
