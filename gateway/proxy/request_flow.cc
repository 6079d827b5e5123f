#include "gateway/proxy/request_flow.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sluice::gateway {
namespace {

using Kind = AttemptResult::Kind;

// Envoy's reset reasons and flags for attempts that got no response.
const char* ResetFlag(Kind kind) {
  switch (kind) {
    case Kind::kConnectFailure:
      return "UF";
    case Kind::kReset:
      return "UC";
    case Kind::kOverflow:
      return "UO";
    default:
      return "";
  }
}

const char* ResetReason(Kind kind) {
  switch (kind) {
    case Kind::kConnectFailure:
      return "remote connection failure";
    case Kind::kReset:
      return "connection termination";
    case Kind::kOverflow:
      return "overflow";
    default:
      return "";
  }
}

}  // namespace

RequestFlow::RequestFlow(Plan plan, absl::BitGenRef rng)
    : plan_(std::move(plan)), retry_(plan_.retry, rng) {}

RequestFlow::Step RequestFlow::Start(event::MonotonicTime now) {
  if (plan_.route_timeout > absl::ZeroDuration()) {
    deadline_ = now + absl::ToChronoNanoseconds(plan_.route_timeout);
  }
  return Attempt();
}

RequestFlow::Step RequestFlow::Attempt() {
  Step step;
  step.kind = Step::Kind::kAttempt;
  step.attempt = ++attempts_;
  // Retry k goes to the k-th alternate (other hosts first), cycling when there are fewer
  // alternates than retries, and to the primary when there are none.
  if (attempts_ == 1 || plan_.alternates.empty()) {
    step.endpoint = plan_.primary;
  } else {
    step.endpoint = plan_.alternates[(attempts_ - 2) % plan_.alternates.size()];
  }
  step.per_try = plan_.retry.per_try_timeout;
  return step;
}

void RequestFlow::AddFlag(const char* flag) {
  if (flag[0] == '\0') return;
  for (const char* f : flags_) {
    if (absl::string_view(f) == flag) return;
  }
  flags_.push_back(flag);
}

std::string RequestFlow::flags() const {
  if (flags_.empty()) return "-";
  std::vector<const char*> ordered = flags_;
  // URX last, as Envoy prints the reason before the retry exhaustion.
  std::stable_partition(ordered.begin(), ordered.end(),
                        [](const char* f) { return absl::string_view(f) != "URX"; });
  return absl::StrJoin(ordered, ",");
}

RequestFlow::Step RequestFlow::Finish(const AttemptResult& result, bool exhausted) {
  if (exhausted) AddFlag("URX");
  Step step;
  switch (result.kind) {
    case Kind::kResponse:
      step.kind = Step::Kind::kPassResponse;
      step.status = result.status;
      return step;
    case Kind::kPerTryTimeout:
      AddFlag("UT");
      step.kind = Step::Kind::kLocalReply;
      step.status = 504;
      step.body = kUpstreamTimeoutBody;
      return step;
    case Kind::kConnectFailure:
    case Kind::kReset:
    case Kind::kOverflow:
      AddFlag(result.dns_failure ? "DF" : ResetFlag(result.kind));
      step.kind = Step::Kind::kLocalReply;
      step.status = 503;
      step.overloaded = result.kind == Kind::kOverflow;
      step.body =
          absl::StrCat("upstream connect error or disconnect/reset before headers. ",
                       attempts_ > 1 ? "retried and the latest " : "", "reset reason: ",
                       result.dns_failure ? "DNS resolution failure" : ResetReason(result.kind));
      return step;
  }
  return step;
}

RequestFlow::Step RequestFlow::OnAttempt(const AttemptResult& result, event::MonotonicTime now,
                                         bool retry_slot_available) {
  absl::Duration backoff;
  switch (retry_.OnAttempt(result, &backoff)) {
    case RetryState::Verdict::kDone:
      return Finish(result, /*exhausted=*/false);
    case RetryState::Verdict::kExhausted:
      return Finish(result, /*exhausted=*/true);
    case RetryState::Verdict::kRetry:
      break;
  }
  if (!retry_slot_available) {
    // The cluster's maxRetries breaker is full: no retry, the outcome stands, flag UO.
    AddFlag("UO");
    return Finish(result, /*exhausted=*/false);
  }
  // Envoy does not check whether the route timeout leaves room for another try; the route
  // timer ends it wherever it is.
  (void)now;
  Step step;
  step.kind = Step::Kind::kBackoff;
  step.wait = backoff;
  return step;
}

RequestFlow::Step RequestFlow::OnBackoffDone(event::MonotonicTime) { return Attempt(); }

RequestFlow::Step RequestFlow::OnRouteTimeout() {
  AddFlag("UT");
  Step step;
  step.kind = Step::Kind::kLocalReply;
  step.status = 504;
  step.body = kUpstreamTimeoutBody;
  return step;
}

}  // namespace sluice::gateway
