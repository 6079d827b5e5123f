#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "lib/routing/endpoint_runtime.h"
#include "lib/routing/request.h"
#include "lib/routing/snapshot.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::gateway {

// Where a decision came from (sluice_gateway_decisions_total{source}).
enum class DecisionSource {
  kServer,  // asked of sluice-server (server mode)
  kLocal,   // decided here on the current pushed table (local mode)
  kStale,   // decided here on the last table while the server cannot be reached
};
const char* DecisionSourceName(DecisionSource source);

// A decision with the route table of its configuration version.
struct DecisionAnswer {
  v1::Decision decision;
  std::shared_ptr<const v1::RouteTable> table;
  DecisionSource source = DecisionSource::kServer;
};

// The decider the server runs, run in the gateway on the DecisionTable the server pushes
// (local mode, and either mode while the server is away). One per worker, used from its loop
// only. Endpoint health follows the server's pushed changes; least-request reads this
// worker's own in-flight counts, as each Envoy does with its own.
class LocalDecider {
 public:
  explicit LocalDecider(absl::BitGenRef rng) : rng_(rng) {}

  // Replaces the table with a newer version's. On error the previous table stays.
  absl::Status Install(const v1::DecisionTable& table);
  // An endpoint ejected or returned since the table was encoded.
  void Apply(const v1::EndpointChange& change);

  bool has_table() const { return snapshot_ != nullptr; }
  uint64_t version() const { return snapshot_ == nullptr ? 0 : snapshot_->version(); }
  // What decisions of the installed version refer to (the server's RouteTable, rebuilt).
  const std::shared_ptr<const v1::RouteTable>& route_table() const { return route_table_; }

  // Decides on the installed table (has_table() must hold). The request's id must be set;
  // it names the decision in reports. When the answer is 503 UH for a cluster,
  // `no_healthy_report` is filled: canary evidence counts such requests as failures.
  // `recycle`, when given, is a spent decision: the answer is written into its message (whose
  // strings keep their buffers) and it is left empty.
  DecisionAnswer Decide(const v1::DecideRequest& request,
                        std::optional<v1::AttemptReport>* no_healthy_report,
                        v1::Decision* recycle = nullptr);
  // A decision's first attempt report ends its count as the endpoint's in-flight load.
  void OnReport(uint64_t id);

  size_t outstanding() const { return outstanding_.size(); }

 private:
  absl::BitGenRef rng_;
  routing::RuntimeStore runtime_;  // in-flight and ejection state, kept across versions
  std::shared_ptr<const routing::Snapshot> snapshot_;
  std::shared_ptr<const v1::RouteTable> route_table_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<routing::EndpointRuntime>> outstanding_;
  routing::RequestAttributes attributes_;  // reused to keep its buffers
};

}  // namespace sluice::gateway
