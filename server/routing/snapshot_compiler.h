#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/config/diagnostics.h"
#include "lib/config/resources.h"
#include "lib/routing/snapshot.h"

namespace sluice::routing {

struct CompileOptions {
  // Short names (`reviews`) resolve to services of this namespace, as for a client there.
  std::string client_namespace = "default";
  std::vector<CanaryWeight> canary_weights;
  // Where endpoint load and health live across snapshots; nullptr: fresh state.
  RuntimeStore* runtime_store = nullptr;
};

// Compiles a validated configuration. Findings that only compilation can make (rules that
// can never match because an earlier one catches everything) go to `diagnostics`.
absl::StatusOr<std::shared_ptr<const Snapshot>> CompileSnapshot(
    config::ConfigSet config, uint64_t version, config::Diagnostics* diagnostics = nullptr,
    const CompileOptions& options = {});

}  // namespace sluice::routing
