#pragma once

#include <map>
#include <string>

#include "lib/config/diagnostics.h"
#include "lib/config/resources.h"

namespace sluice::config {

// Checks that need several resources at once: duplicate names, routes to subsets no
// DestinationRule defines, outlier settings that can never eject, Canary references.
void ValidateConfigSet(const ConfigSet& config, Diagnostics& diagnostics);

// DestinationRules by resolved host (the first one read for each host).
using DestinationRuleIndex = std::map<std::string, const DestinationRule*>;

// The rule for `host`: the one for the exact name, else the most specific wildcard rule
// (`*.example.com`) that covers it, as Istio picks. nullptr when none.
const DestinationRule* FindDestinationRule(const DestinationRuleIndex& rules,
                                           const std::string& host);

// Istio's defaults when an outlierDetection block is present.
inline constexpr int kDefaultMaxEjectionPercent = 10;

}  // namespace sluice::config
