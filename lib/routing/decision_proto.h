#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "lib/routing/decider.h"
#include "lib/routing/snapshot.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::routing {

// Limits that keep one request description cheap to handle and safe to log.
inline constexpr size_t kMaxHeaders = 100;
inline constexpr size_t kMaxHeaderBytes = 64 * 1024;
inline constexpr size_t kMaxPathBytes = 16 * 1024;

// INVALID_ARGUMENT naming the problem, or OK.
absl::Status CheckRequest(const v1::DecideRequest& request);

void ToAttributes(const v1::DecideRequest& request, RequestAttributes& out);

// What decisions of `snapshot` refer to: routes and clusters by id, the header names match
// rules read.
void FillRouteTable(const Snapshot& snapshot, v1::RouteTable& out);

// `details`: also fill the self-contained DecisionDetails (unary Decide, Explain).
void FillDecision(const Decision& decision, const Snapshot& snapshot, bool details,
                  v1::Decision& out);

void FillRetryPolicy(const RetryPolicy& policy, v1::RetryPolicy& out);
void FillConnectionPool(const ConnectionPoolLimits& limits, v1::ConnectionPool& out);

}  // namespace sluice::routing
