#pragma once

#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sluice {

// Writes `contents` to `path` so that a crash leaves either the old or the new file: write
// a temporary file, fsync it, rename it over the old one, fsync the folder.
absl::Status WriteFileAtomically(const std::filesystem::path& path, absl::string_view contents);

// The whole file, or "" when it cannot be read.
std::string ReadFile(const std::filesystem::path& path);

}  // namespace sluice
