#pragma once

#include "server/config/diagnostics.h"
#include "server/config/resources.h"

namespace sluice::config {

// Checks that need several resources at once: duplicate names, routes to subsets no
// DestinationRule defines, outlier settings that can never eject, Canary references.
void ValidateConfigSet(const ConfigSet& config, Diagnostics& diagnostics);

// Istio's defaults when an outlierDetection block is present.
inline constexpr int kDefaultMaxEjectionPercent = 10;

}  // namespace sluice::config
