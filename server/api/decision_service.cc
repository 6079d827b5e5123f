#include "server/api/decision_service.h"

#include <algorithm>
#include <chrono>
#include <deque>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "lib/common/log.h"
#include "lib/routing/decider.h"
#include "lib/routing/decision_proto.h"

namespace sluice::api {

using routing::CheckRequest;
using routing::FillDecision;
using routing::FillRouteTable;
using routing::ToAttributes;
namespace {

// What one GatewayMessage may carry: twice what a gateway ever batches.
constexpr int kMaxDecidesPerMessage = 8192;
constexpr int kMaxReportsPerMessage = 32768;

using Clock = std::chrono::steady_clock;

absl::BitGen& ThreadBitGen() {
  thread_local absl::BitGen gen;
  return gen;
}

// What an attempt's outcome says about its endpoint, in the outlier detector's terms.
double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One gateway worker's stream. Reads are processed one message at a time (gRPC allows one
// read in flight), so per-stream state touched only while processing needs no lock; the
// write queue is shared with write completions and is guarded.
class StreamReactor final : public grpc::ServerBidiReactor<v1::GatewayMessage, v1::ServerMessage>,
                            public GatewayHub::Stream {
 public:
  // `context` outlives the reactor (gRPC's callback API); `checked_generation` is the access
  // policy's generation the caller was admitted under.
  StreamReactor(DecisionServiceImpl& service, grpc::CallbackServerContext* context,
                uint64_t checked_generation)
      : service_(service),
        context_(context),
        peer_(context->peer()),
        checked_generation_(checked_generation) {
    service_.metrics().streams_open.Increment();
    StartRead(&in_);
  }

  // GatewayHub::Stream
  void Push(v1::ServerMessage message) override {
    absl::MutexLock lock(&mu_);
    if (finished_ || write_failed_) return;
    // A keepalive only matters on a quiet stream.
    if (message.keepalive() && (writing_ || !queue_.empty())) return;
    queue_.push_back(std::move(message));
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  // grpc::ServerBidiReactor
  void OnReadDone(bool ok) override {
    if (!ok) {
      absl::MutexLock lock(&mu_);
      read_done_ = true;
      MaybeFinishLocked();
      return;
    }
    // A policy edit may have taken the gateway role from this caller: its stream ends, as
    // its next one would be refused.
    if (const security::AccessControl* access = service_.access();
        access != nullptr && access->generation() != checked_generation_) {
      checked_generation_ = access->generation();
      const security::Verdict verdict =
          access->Check(*context_, security::Role::kGateway, "Stream");
      if (!verdict.status.ok()) {
        LogWarning("decision stream from ", peer_, " ended: ", verdict.status.message());
        absl::MutexLock lock(&mu_);
        read_done_ = true;
        refusal_ = security::ToGrpcStatus(verdict.status);
        in_.Clear();
        MaybeFinishLocked();
        return;
      }
    }
    if (in_.decide_size() > kMaxDecidesPerMessage || in_.reports_size() > kMaxReportsPerMessage) {
      // More than any gateway batches (it queues at most 4,096 decisions and 16,384 reports):
      // a broken or hostile peer. Its stream ends with the reason; nothing of it is used.
      absl::MutexLock lock(&mu_);
      read_done_ = true;
      refusal_ = grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("GatewayMessage with ", in_.decide_size(), " decide requests and ",
                       in_.reports_size(), " reports: the limits are ", kMaxDecidesPerMessage,
                       " and ", kMaxReportsPerMessage, " per message"));
      in_.Clear();
      MaybeFinishLocked();
      return;
    }
    Process();
    in_.Clear();
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    writing_ = false;
    if (!ok) {
      // The gateway went away; drop what is queued and finish when reads end too.
      queue_.clear();
      write_failed_ = true;
    }
    if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
      return;
    }
    MaybeFinishLocked();
  }

  void OnDone() override {
    if (hub_id_ != 0) service_.hub().Unregister(hub_id_);
    // Decisions whose attempts will never be reported stop counting as load.
    for (auto& [id, runtime] : outstanding_) {
      runtime->in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    service_.metrics().streams_open.Decrement();
    delete this;
  }

 private:
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (read_done_ && !writing_ && queue_.empty() && !finished_) {
      finished_ = true;
      Finish(refusal_);
    }
  }

  bool Forwarding() const {
    return service_.forwarder() != nullptr && service_.forwarder()->active();
  }

  void ForwardUnhealthy(std::string cluster) {
    v1::ForwardedAttempt forwarded;
    forwarded.set_cluster(std::move(cluster));
    forwarded.set_outcome(v1::NO_HEALTHY_UPSTREAM);
    service_.forwarder()->Add(std::move(forwarded));
  }

  void HandleReport(const v1::AttemptReport& report) {
    ServerMetrics& metrics = service_.metrics();
    const size_t outcome = static_cast<size_t>(report.outcome());
    if (outcome < metrics.attempt_reports.size()) metrics.attempt_reports[outcome]->Increment();
    if (report.outcome() == v1::NO_HEALTHY_UPSTREAM) {
      // A local-mode gateway found every endpoint ejected: the request failed for this
      // subset without an attempt (the server counts its own UH decisions the same way).
      service_.traffic().OnAttempt(report.config_version(), report.cluster_id(), /*failed=*/true,
                                   /*latency_ms=*/std::nullopt);
      if (Forwarding()) {
        if (std::optional<std::string> cluster =
                service_.health().ClusterName(report.config_version(), report.cluster_id())) {
          ForwardUnhealthy(*std::move(cluster));
        }
      }
      return;
    }
    // The first report of a decision ends its count as in-flight load.
    auto it = outstanding_.find(report.id());
    if (it != outstanding_.end()) {
      it->second->in_flight.fetch_sub(1, std::memory_order_relaxed);
      outstanding_.erase(it);
    }
    const health::AttemptEvent event = ToAttemptEvent(report.outcome(), report.status_code());
    if (Forwarding() && event.kind != health::AttemptEvent::Kind::kNotCounted) {
      // A follower: the leading replica's detector and canary count it (this one keeps the
      // recent outcomes its `endpoints` shows).
      health::HealthTracker::Named named;
      service_.health().OnAttempt(
          {report.config_version(), report.cluster_id(), report.endpoint_index(), event}, &named);
      if (!named.cluster.empty()) {
        v1::ForwardedAttempt forwarded;
        forwarded.set_cluster(std::move(named.cluster));
        forwarded.set_endpoint(std::move(named.endpoint));
        forwarded.set_outcome(report.outcome());
        forwarded.set_status_code(report.status_code());
        forwarded.set_latency_us(report.latency_us());
        service_.forwarder()->Add(std::move(forwarded));
      }
    } else {
      service_.health().OnAttempt(
          {report.config_version(), report.cluster_id(), report.endpoint_index(), event});
    }
    if (event.kind != health::AttemptEvent::Kind::kNotCounted) {
      const bool failed =
          event.kind != health::AttemptEvent::Kind::kResponse || event.status >= 500;
      service_.traffic().OnAttempt(report.config_version(), report.cluster_id(), failed,
                                   report.latency_us() / 1000.0);
    }
  }

  void Process() {
    for (const v1::AttemptReport& report : in_.reports()) HandleReport(report);
    if (in_.has_ack() && hub_id_ != 0) service_.hub().OnAck(hub_id_, in_.ack());
    // A gateway's first message (its name) subscribes it to the pushed decision table and
    // is answered with the route table at once: it then knows the match header names before
    // its first request, and that it is connected.
    const bool hello = sent_version_ == 0 && !in_.gateway_name().empty();
    if (hello && hub_id_ == 0) {
      hub_id_ = service_.hub().Register(this, in_.gateway_name(), peer_, in_.mode());
    }
    if (hub_id_ != 0) service_.hub().OnTraffic(hub_id_, in_.decide_size(), in_.reports_size());
    if (in_.decide_size() == 0 && !hello) return;

    ServerMetrics& metrics = service_.metrics();
    const std::shared_ptr<const routing::Snapshot> snapshot = service_.store().Current();
    v1::ServerMessage batch;
    if (snapshot->version() != sent_version_) {
      FillRouteTable(*snapshot, *batch.mutable_table());
      sent_version_ = snapshot->version();
    }
    batch.mutable_decisions()->Reserve(in_.decide_size());
    {
      ServerMetrics::LatencyBatch latency(metrics);
      for (const v1::DecideRequest& request : in_.decide()) {
        v1::Decision* out = batch.add_decisions();
        out->set_id(request.id());
        if (absl::Status status = CheckRequest(request); !status.ok()) {
          // One malformed request must not end the stream the other requests share.
          metrics.decide_invalid.Increment();
          out->set_config_version(snapshot->version());
          out->set_action(v1::DIRECT_RESPONSE);
          out->set_status(400);
          out->set_response_flags("DPE");
          out->set_body(std::string(status.message()));
          continue;
        }
        if (!service_.HeadersCover(request.header_names_version(), *snapshot)) {
          // Deciding now would read a header the gateway did not send: ask again.
          metrics.decide_resend.Increment();
          out->set_config_version(snapshot->version());
          out->set_action(v1::RESEND);
          continue;
        }
        const Clock::time_point start = Clock::now();
        ToAttributes(request, attributes_);
        const routing::Decision d = routing::Decide(*snapshot, attributes_, ThreadBitGen());
        FillDecision(d, *snapshot, /*details=*/false, *out);
        if (d.endpoint_index >= 0) {
          const auto& runtime = d.cluster->endpoints[d.endpoint_index].runtime;
          runtime->in_flight.fetch_add(1, std::memory_order_relaxed);
          auto [it, inserted] = outstanding_.emplace(request.id(), runtime);
          if (!inserted) {  // a reused id: the older decision is no longer tracked
            it->second->in_flight.fetch_sub(1, std::memory_order_relaxed);
            it->second = runtime;
          }
        }
        metrics.CountDecision(*snapshot, d);
        if (d.kind == routing::Decision::Kind::kDirectResponse && d.cluster != nullptr &&
            d.response_flags[0] == 'U' && d.response_flags[1] == 'H') {
          // No healthy endpoint: the request fails without an attempt to report, yet it
          // failed for this subset. The canary's evidence must see it, or a canary whose
          // every endpoint is ejected would look like one without traffic.
          service_.traffic().OnAttempt(snapshot->version(), d.cluster->id, /*failed=*/true,
                                       /*latency_ms=*/std::nullopt);
          if (Forwarding()) ForwardUnhealthy(d.cluster->name);
        }
        latency.Record(SecondsSince(start));
      }
    }

    absl::MutexLock lock(&mu_);
    if (write_failed_) return;
    // Coalesce: while a write is in flight, decisions join the last queued message (unless
    // it would then carry a route table of another version).
    if (queue_.size() > 1 && !batch.has_table()) {
      v1::ServerMessage& back = queue_.back();
      for (v1::Decision& d : *batch.mutable_decisions()) back.add_decisions()->Swap(&d);
      return;
    }
    queue_.push_back(std::move(batch));
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  DecisionServiceImpl& service_;
  grpc::CallbackServerContext* const context_;
  const std::string peer_;
  uint64_t checked_generation_;  // touched only while processing a read (one at a time)
  uint64_t hub_id_ = 0;          // registered with the hub once the gateway said hello
  v1::GatewayMessage in_;
  routing::RequestAttributes attributes_;  // reused across requests to keep its buffers
  uint64_t sent_version_ = 0;
  absl::flat_hash_map<uint64_t, std::shared_ptr<routing::EndpointRuntime>> outstanding_;

  absl::Mutex mu_;
  std::deque<v1::ServerMessage> queue_ ABSL_GUARDED_BY(mu_);  // front: being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status refusal_ ABSL_GUARDED_BY(mu_);  // OK unless the gateway broke a limit
};

// A stream that ends as soon as it starts, with the reason the caller may not open one.
class RefusedStream final : public grpc::ServerBidiReactor<v1::GatewayMessage, v1::ServerMessage> {
 public:
  explicit RefusedStream(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerUnaryReactor* DecisionServiceImpl::Decide(grpc::CallbackServerContext* context,
                                                      const v1::DecideRequest* request,
                                                      v1::Decision* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (access_ != nullptr) {
    const security::Verdict verdict = access_->Check(*context, security::Role::kGateway, "Decide");
    if (!verdict.status.ok()) {
      LogWarning("Decide refused: ", verdict.status.message());
      reactor->Finish(security::ToGrpcStatus(verdict.status));
      return reactor;
    }
  }
  if (absl::Status status = CheckRequest(*request); !status.ok()) {
    metrics_.decide_invalid.Increment();
    reactor->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(status.message())));
    return reactor;
  }
  const std::shared_ptr<const routing::Snapshot> snapshot = store_.Current();
  routing::RequestAttributes attributes;
  ToAttributes(*request, attributes);
  const Clock::time_point start = Clock::now();
  const routing::Decision d = routing::Decide(*snapshot, attributes, ThreadBitGen());
  {
    ServerMetrics::LatencyBatch latency(metrics_);
    latency.Record(SecondsSince(start));
  }
  FillDecision(d, *snapshot, /*details=*/true, *response);
  response->set_id(request->id());
  metrics_.CountDecision(*snapshot, d);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerBidiReactor<v1::GatewayMessage, v1::ServerMessage>* DecisionServiceImpl::Stream(
    grpc::CallbackServerContext* context) {
  // Read before the check: a policy installed in between makes the stream check again.
  const uint64_t generation = access_ != nullptr ? access_->generation() : 0;
  if (access_ != nullptr) {
    const security::Verdict verdict = access_->Check(*context, security::Role::kGateway, "Stream");
    if (!verdict.status.ok()) {
      // Logged once per refused stream; a refused gateway retries with back-off.
      LogWarning("decision stream from ", context->peer(), " refused: ", verdict.status.message());
      return new RefusedStream(security::ToGrpcStatus(verdict.status));
    }
  }
  return new StreamReactor(*this, context, generation);
}

void DecisionServiceImpl::OnSnapshot(const routing::Snapshot& snapshot) {
  absl::MutexLock lock(&header_names_mu_);
  header_names_.emplace_back(snapshot.version(), snapshot.match_header_names());
  while (header_names_.size() > kHeaderNameVersionsKept) header_names_.pop_front();
}

bool DecisionServiceImpl::HeadersCover(uint64_t described_with,
                                       const routing::Snapshot& current) const {
  // 0: the gateway had no table and sent every header; the same version: its names.
  if (described_with == 0 || described_with == current.version()) return true;
  const auto& needed = current.match_header_names();
  if (needed.empty()) return true;
  absl::MutexLock lock(&header_names_mu_);
  for (const auto& [version, names] : header_names_) {
    if (version != described_with) continue;
    return std::all_of(needed.begin(), needed.end(), [&names = names](const std::string& n) {
      return std::find(names.begin(), names.end(), n) != names.end();
    });
  }
  return false;  // too old to know what it sent
}

}  // namespace sluice::api
