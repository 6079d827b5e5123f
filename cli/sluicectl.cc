// sluicectl: the command-line client. This file holds argument handling; each command's
// work lives in the libraries it calls.

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/config/loader.h"
#include "server/routing/snapshot.h"
#include "server/routing/snapshot_printer.h"

namespace {

constexpr char kUsage[] = R"(usage: sluicectl COMMAND [options]

commands:
  validate -f PATH [-f PATH]... [--describe] [--quiet]
      Check Istio YAML (files or folders) offline, as the server would on apply.
      Prints every problem as file:line: field.path: message and exits 1 when there are
      errors; prints a summary (hosts, routes, subsets, endpoints) and exits 0 when valid.
      --describe   also print every host's routes, clusters, endpoints and canaries
      --quiet      print errors only (no warnings or notices)
)";

int Usage(int code) {
  (code == 0 ? std::cout : std::cerr) << kUsage;
  return code;
}

int Validate(const std::vector<std::string>& args) {
  std::vector<std::string> paths;
  bool describe = false;
  bool quiet = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "-f" || a == "--filename") && i + 1 < args.size()) {
      paths.push_back(args[++i]);
    } else if (absl::StartsWith(a, "--filename=")) {
      paths.push_back(a.substr(11));
    } else if (a == "--describe") {
      describe = true;
    } else if (a == "--quiet" || a == "-q") {
      quiet = true;
    } else if (a == "-h" || a == "--help") {
      return Usage(0);
    } else {
      std::cerr << "sluicectl validate: unexpected argument \"" << a << "\"\n";
      return Usage(2);
    }
  }
  if (paths.empty()) {
    std::cerr << "sluicectl validate: give at least one -f PATH\n";
    return Usage(2);
  }
  sluice::config::LoadResult loaded = sluice::config::LoadPaths(paths);
  absl::StatusOr<std::shared_ptr<const sluice::routing::Snapshot>> snapshot;
  if (loaded.ok()) {
    snapshot = sluice::routing::CompileSnapshot(std::move(loaded.config), 1, &loaded.diagnostics);
    if (!snapshot.ok()) {
      loaded.diagnostics.Error({}, "", std::string(snapshot.status().message()));
    }
  }
  for (const sluice::config::Diagnostic& d : loaded.diagnostics.all()) {
    if (quiet && d.severity != sluice::config::Severity::kError) continue;
    std::cerr << d.ToString() << "\n";
  }
  if (loaded.diagnostics.HasErrors()) {
    std::cerr << loaded.diagnostics.error_count() << " error(s); nothing would be applied\n";
    return 1;
  }
  if (describe) {
    std::cout << sluice::routing::DescribeSnapshot(**snapshot);
  } else {
    std::cout << "valid: " << sluice::routing::FormatSummary(sluice::routing::Summarize(**snapshot))
              << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage(2);
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "validate") return Validate(args);
  if (command == "-h" || command == "--help" || command == "help") return Usage(0);
  std::cerr << "sluicectl: unknown command \"" << command << "\"\n";
  return Usage(2);
}
