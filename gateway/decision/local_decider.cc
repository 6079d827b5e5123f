#include "gateway/decision/local_decider.h"

#include <memory>
#include <utility>
#include <vector>

#include "lib/routing/decider.h"
#include "lib/routing/decision_proto.h"
#include "lib/routing/table_codec.h"

namespace sluice::gateway {

const char* DecisionSourceName(DecisionSource source) {
  switch (source) {
    case DecisionSource::kServer:
      return "server";
    case DecisionSource::kLocal:
      return "local";
    case DecisionSource::kStale:
      return "stale";
  }
  return "server";
}

absl::Status LocalDecider::Install(const v1::DecisionTable& table) {
  // A refused table changes nothing: DecodeTable applies endpoint health only on success.
  absl::StatusOr<std::shared_ptr<const routing::Snapshot>> snapshot =
      routing::DecodeTable(table, &runtime_);
  if (!snapshot.ok()) return snapshot.status();
  auto route_table = std::make_shared<v1::RouteTable>();
  routing::FillRouteTable(**snapshot, *route_table);
  snapshot_ = *std::move(snapshot);
  route_table_ = std::move(route_table);
  return absl::OkStatus();
}

void LocalDecider::Apply(const v1::EndpointChange& change) {
  // The runtime is shared by every version that has this endpoint; one not in the installed
  // table is created and dropped again, which is harmless.
  runtime_.Endpoint(change.cluster(), change.endpoint())
      ->ejected.store(change.ejected(), std::memory_order_relaxed);
}

DecisionAnswer LocalDecider::Decide(const v1::DecideRequest& request,
                                    std::optional<v1::AttemptReport>* no_healthy_report,
                                    v1::Decision* recycle) {
  DecisionAnswer answer;
  answer.table = route_table_;
  v1::Decision& out = answer.decision;
  if (recycle != nullptr) {
    out.Swap(recycle);
    out.Clear();  // keeps the string fields' buffers
  }
  out.set_id(request.id());
  if (absl::Status status = routing::CheckRequest(request); !status.ok()) {
    out.set_config_version(snapshot_->version());
    out.set_action(v1::DIRECT_RESPONSE);
    out.set_status(400);
    out.set_response_flags("DPE");
    out.set_body(std::string(status.message()));
    return answer;
  }
  routing::ToAttributes(request, attributes_);
  const routing::Decision d = routing::Decide(*snapshot_, attributes_, rng_);
  routing::FillDecision(d, *snapshot_, /*details=*/false, out);
  if (d.endpoint_index >= 0) {
    auto runtime = d.cluster->endpoints[d.endpoint_index].runtime;
    runtime->in_flight.fetch_add(1, std::memory_order_relaxed);
    auto [it, inserted] = outstanding_.emplace(request.id(), runtime);
    if (!inserted) {  // a reused id: the older decision is no longer tracked
      it->second->in_flight.fetch_sub(1, std::memory_order_relaxed);
      it->second = std::move(runtime);
    }
  } else if (d.cluster != nullptr && d.kind == routing::Decision::Kind::kDirectResponse &&
             d.response_flags[0] == 'U' && d.response_flags[1] == 'H' &&
             no_healthy_report != nullptr) {
    v1::AttemptReport& report = no_healthy_report->emplace();
    report.set_id(request.id());
    report.set_config_version(snapshot_->version());
    report.set_cluster_id(d.cluster->id);
    report.set_outcome(v1::NO_HEALTHY_UPSTREAM);
    report.set_status_code(503);
    report.set_response_flags("UH");
    report.set_final(true);
  }
  return answer;
}

void LocalDecider::OnReport(uint64_t id) {
  auto it = outstanding_.find(id);
  if (it == outstanding_.end()) return;
  it->second->in_flight.fetch_sub(1, std::memory_order_relaxed);
  outstanding_.erase(it);
}

}  // namespace sluice::gateway
