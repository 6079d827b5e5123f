#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "lib/config/diagnostics.h"
#include "lib/config/resources.h"

namespace sluice::config {

// Limits on one YAML document, checked before its fields are read; ParseYaml reports each at
// the line where the document passes it.
//
// Mappings and lists inside one another (yaml-cpp itself stops at 500, saying "bad file").
inline constexpr int kMaxYamlDepth = 64;
// Nodes that aliases (*name) add when expanded. yaml-cpp shares what an alias names, but
// reading walks it at every alias, so a few lines could otherwise stand for millions of
// routes.
inline constexpr uint64_t kMaxYamlAliasNodes = 100000;

struct LoadResult {
  ConfigSet config;
  Diagnostics diagnostics;
  bool ok() const { return !diagnostics.HasErrors(); }
};

// Parses multi-document YAML text named `file_name` in diagnostics, appending resources to
// `out`. Kinds sluice does not read are skipped with a notice. No cross-resource checks.
// Text that is not UTF-8 is an error (nothing of it is read), and so is a document past
// kMaxYamlDepth or kMaxYamlAliasNodes (the other documents are read).
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
