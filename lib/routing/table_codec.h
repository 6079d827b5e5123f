#pragma once

// The decision table codec: a compiled Snapshot as a sluice.v1.DecisionTable and back. The
// server encodes the snapshot it decides on; a local-mode gateway decodes it and runs the
// same decider, which then makes the same decisions for the same random numbers.

#include <memory>

#include "absl/status/statusor.h"
#include "lib/routing/endpoint_runtime.h"
#include "lib/routing/snapshot.h"
#include "sluice/v1/table.pb.h"

namespace sluice::routing {

// Writes everything the decider and the gateway's policies read from `snapshot` into `out`
// (cleared first). Endpoint ejection is read from each endpoint's runtime as it is now; load
// (in-flight counts, round-robin turns) stays local to whoever decides.
void EncodeTable(const Snapshot& snapshot, v1::DecisionTable& out);

// Rebuilds the snapshot `table` describes: match rules and regexes recompiled, host lookup
// and route ids rebuilt. Endpoint and cluster runtime state comes from `runtime_store` by
// cluster name and endpoint id (fresh state when null), and each endpoint's `ejected` is set
// from the table. The snapshot's source() is an empty ConfigSet. An inconsistent table
// (ids out of range or out of order, invalid regexes, unknown enum values, missing parts a
// route's action needs) yields INVALID_ARGUMENT naming the field, e.g.
// `virtual_hosts[0].routes[3].destinations[1].cluster_id: 7 out of range (5 clusters)`.
absl::StatusOr<std::shared_ptr<const Snapshot>> DecodeTable(const v1::DecisionTable& table,
                                                            RuntimeStore* runtime_store);

}  // namespace sluice::routing
