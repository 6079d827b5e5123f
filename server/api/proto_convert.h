#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "server/routing/decider.h"
#include "server/routing/snapshot.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::api {

// Limits that keep one request description cheap to handle and safe to log.
inline constexpr size_t kMaxHeaders = 100;
inline constexpr size_t kMaxHeaderBytes = 64 * 1024;
inline constexpr size_t kMaxPathBytes = 16 * 1024;

// INVALID_ARGUMENT naming the problem, or OK.
absl::Status CheckRequest(const v1::DecideRequest& request);

void ToAttributes(const v1::DecideRequest& request, routing::RequestAttributes& out);

// What decisions of `snapshot` refer to: routes and clusters by id, the header names match
// rules read.
void FillRouteTable(const routing::Snapshot& snapshot, v1::RouteTable& out);

// `details`: also fill the self-contained DecisionDetails (unary Decide, Explain).
void FillDecision(const routing::Decision& decision, const routing::Snapshot& snapshot,
                  bool details, v1::Decision& out);

void FillRetryPolicy(const routing::RetryPolicy& policy, v1::RetryPolicy& out);
void FillConnectionPool(const routing::ConnectionPoolLimits& limits, v1::ConnectionPool& out);

}  // namespace sluice::api
