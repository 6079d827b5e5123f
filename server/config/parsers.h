#pragma once

// Per-kind parsers: each reads a document's `spec` strictly, applies Istio's field-level
// validation rules, and reports every problem with its file, line and field path.

#include <optional>

#include "absl/strings/string_view.h"
#include "lib/config/resources.h"
#include "server/config/yaml_reader.h"

namespace sluice::config {

VirtualService ParseVirtualService(ObjectMeta meta, const Field& spec, const ParseContext& ctx);
DestinationRule ParseDestinationRule(ObjectMeta meta, const Field& spec, const ParseContext& ctx);
ServiceEntry ParseServiceEntry(ObjectMeta meta, const Field& spec, const ParseContext& ctx);
WorkloadEntry ParseWorkloadEntry(ObjectMeta meta, const Field& spec, const ParseContext& ctx);
Canary ParseCanary(ObjectMeta meta, const Field& spec, const ParseContext& ctx);

// Shared by WorkloadEntry and ServiceEntry.endpoints.
WorkloadEntrySpec ParseWorkloadEntrySpec(const Field& f, const ParseContext& ctx);

// The retryOn tokens Istio's webhook accepts, besides HTTP status codes.
bool IsRetryOnCondition(absl::string_view token);

}  // namespace sluice::config
