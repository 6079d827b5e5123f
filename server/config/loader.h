#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "lib/config/diagnostics.h"
#include "lib/config/resources.h"

namespace sluice::config {

struct LoadResult {
  ConfigSet config;
  Diagnostics diagnostics;
  bool ok() const { return !diagnostics.HasErrors(); }
};

// Parses multi-document YAML text named `file_name` in diagnostics, appending resources to
// `out`. Kinds sluice does not read are skipped with a notice. No cross-resource checks.
void ParseYaml(absl::string_view text, const std::string& file_name, ConfigSet& out,
               Diagnostics& diagnostics);

// Parses `text` and runs the cross-resource checks (ValidateConfigSet).
LoadResult LoadText(absl::string_view text, absl::string_view file_name);

// Reads files and folders (recursively: every *.yaml and *.yml, in name order), then runs
// the cross-resource checks over everything read.
// The .yaml/.yml files under `folder`, recursively, sorted. Hidden entries (names starting
// with a dot) are skipped, folders included: Kubernetes mounts a ConfigMap as symlinks into
// a hidden timestamped folder, whose files would otherwise be read twice.
std::vector<std::string> ConfigFilesIn(const std::string& folder);

LoadResult LoadPaths(const std::vector<std::string>& paths);

}  // namespace sluice::config
