#pragma once

#include <cstddef>
#include <string>

#include "lib/routing/snapshot.h"

namespace sluice::routing {

struct SnapshotSummary {
  size_t hosts = 0;      // virtual hosts that answer requests
  size_t routes = 0;     // HTTP routes across them
  size_t subsets = 0;    // subsets defined by DestinationRules
  size_t endpoints = 0;  // distinct upstream addresses
  size_t canaries = 0;
};

SnapshotSummary Summarize(const Snapshot& snapshot);

// "3 hosts, 5 routes, 6 subsets, 4 endpoints, 1 canary"
std::string FormatSummary(const SnapshotSummary& summary);

// Everything a person needs to see what the configuration does: per host its routes in
// order (matches, destinations and weights, timeout, retries, faults, mirrors), then the
// clusters with their endpoints and policies, then the canaries.
std::string DescribeSnapshot(const Snapshot& snapshot);

// "10%", "0.1%", "0.0001%"
std::string FormatPercent(const config::FractionalPercent& p);

}  // namespace sluice::routing
