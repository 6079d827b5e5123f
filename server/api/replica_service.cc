#include "server/api/replica_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "lib/common/log.h"
#include "prometheus/family.h"

namespace sluice::api {
namespace {

prometheus::Family<prometheus::Counter>& ForwardedFamily(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("sluice_replica_forwarded_reports_total")
      .Help(
          "Gateway attempt reports this follower replica forwarded to the leading replica "
          "(result: sent, or dropped when no leader took them)")
      .Register(registry);
}

}  // namespace

health::AttemptEvent ToAttemptEvent(v1::Outcome outcome, uint32_t status_code) {
  using Kind = health::AttemptEvent::Kind;
  switch (outcome) {
    case v1::RESPONSE:
      return {Kind::kResponse, status_code};
    case v1::CONNECT_FAILURE:
      return {Kind::kConnectFailure, 0};
    case v1::RESET:
      return {Kind::kReset, 0};
    case v1::TIMEOUT:
      return {Kind::kTimeout, 0};
    default:
      // Overflows never reached the endpoint (Envoy does not count them either, issue
      // #25487); NOT_SENT attempts were never sent or not awaited.
      return {Kind::kNotCounted, 0};
  }
}

void CountForwarded(const v1::ForwardedAttempt& attempt, health::HealthTracker& health,
                    canary::TrafficRecorder& traffic) {
  if (attempt.outcome() == v1::NO_HEALTHY_UPSTREAM) {
    // No attempt was made, yet the request failed for this cluster: canary evidence only.
    traffic.OnAttemptByCluster(attempt.cluster(), /*failed=*/true, /*latency_ms=*/std::nullopt);
    return;
  }
  const health::AttemptEvent event = ToAttemptEvent(attempt.outcome(), attempt.status_code());
  if (event.kind == health::AttemptEvent::Kind::kNotCounted) return;
  health.OnNamedAttempt(attempt.cluster(), attempt.endpoint(), event);
  const bool failed = event.kind != health::AttemptEvent::Kind::kResponse || event.status >= 500;
  traffic.OnAttemptByCluster(attempt.cluster(), failed, attempt.latency_us() / 1000.0);
}

grpc::ServerUnaryReactor* ReplicaServiceImpl::Forward(grpc::CallbackServerContext* context,
                                                      const v1::ForwardRequest* request,
                                                      v1::ForwardResponse* /*response*/) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (access_ != nullptr) {
    const security::Verdict verdict = access_->Check(*context, security::Role::kReplica, "Forward");
    if (!verdict.status.ok()) {
      LogWarning("Forward refused: ", verdict.status.message());
      reactor->Finish(security::ToGrpcStatus(verdict.status));
      return reactor;
    }
  }
  if (!leads_()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                 "this replica does not lead: its detectors do not count"));
    return reactor;
  }
  for (const v1::ForwardedAttempt& attempt : request->attempts()) {
    CountForwarded(attempt, health_, traffic_);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

ReportForwarder::ReportForwarder(Options options, prometheus::Registry& registry)
    : options_(std::move(options)),
      sent_(ForwardedFamily(registry).Add({{"result", "sent"}})),
      dropped_(ForwardedFamily(registry).Add({{"result", "dropped"}})),
      thread_([this] { Run(); }) {}

ReportForwarder::~ReportForwarder() {
  stop_.Notify();
  thread_.join();
}

void ReportForwarder::Add(v1::ForwardedAttempt attempt) {
  absl::MutexLock lock(&mu_);
  if (buffer_.size() >= options_.max_buffered) {
    dropped_.Increment();
    return;
  }
  buffer_.push_back(std::move(attempt));
}

void ReportForwarder::Run() {
  while (!stop_.WaitForNotificationWithTimeout(options_.interval)) {
    std::vector<v1::ForwardedAttempt> batch;
    {
      absl::MutexLock lock(&mu_);
      batch.swap(buffer_);
    }
    if (!batch.empty()) Send(std::move(batch));
  }
}

void ReportForwarder::Send(std::vector<v1::ForwardedAttempt> batch) {
  const std::string leader = options_.leader_address();
  absl::Status status = absl::OkStatus();
  if (leader.empty() || leader == options_.own_address()) {
    status = absl::UnavailableError(leader.empty() ? "no replica leads at the moment"
                                                   : "this replica leads but does not detect yet");
  } else {
    if (leader != channel_address_ || stub_ == nullptr) {
      absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
          security::ChannelCredentials(options_.transport);
      if (!credentials.ok()) {
        status = credentials.status();
      } else {
        grpc::ChannelArguments args;
        security::AddServerNameOverride(options_.transport, args);
        stub_ = v1::ReplicaService::NewStub(grpc::CreateCustomChannel(leader, *credentials, args));
        channel_address_ = leader;
      }
    }
    if (status.ok()) {
      v1::ForwardRequest request;
      request.set_replica(options_.replica());
      request.mutable_attempts()->Reserve(static_cast<int>(batch.size()));
      for (v1::ForwardedAttempt& attempt : batch) request.add_attempts()->Swap(&attempt);
      v1::ForwardResponse response;
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + options_.deadline));
      const grpc::Status sent = stub_->Forward(&context, request, &response);
      if (sent.ok()) {
        sent_.Increment(static_cast<double>(batch.size()));
        return;
      }
      status = absl::UnavailableError(absl::StrCat("the leader at ", leader, " answered ",
                                                   sent.error_code(), ": ", sent.error_message()));
    }
  }
  dropped_.Increment(static_cast<double>(batch.size()));
  // One line per 10 s at most: a leader election drops a few batches by design.
  const absl::Time now = absl::Now();
  if (now - last_warning_ >= absl::Seconds(10)) {
    last_warning_ = now;
    LogWarning("could not forward ", batch.size(),
               " gateway reports to the leading replica (dropped): ", status.message());
  }
}

}  // namespace sluice::api
