#include "server/health/outlier_detector.h"

#include <algorithm>

namespace sluice::health {

const char* EjectionReasonName(EjectionReason reason) {
  switch (reason) {
    case EjectionReason::kNone:
      return "none";
    case EjectionReason::kConsecutive5xx:
      return "consecutive_5xx";
    case EjectionReason::kConsecutiveGatewayErrors:
      return "consecutive_gateway_failure";
    case EjectionReason::kConsecutiveLocalOrigin:
      return "consecutive_local_origin_failure";
  }
  return "none";
}

EjectionReason EjectionReasonFromName(std::string_view name) {
  for (EjectionReason reason :
       {EjectionReason::kConsecutive5xx, EjectionReason::kConsecutiveGatewayErrors,
        EjectionReason::kConsecutiveLocalOrigin}) {
    if (name == EjectionReasonName(reason)) return reason;
  }
  return EjectionReason::kNone;
}

OutlierDetector::OutlierDetector(const routing::OutlierPolicy& policy, size_t hosts)
    : policy_(policy),
      // Envoy: max_ejection_time defaults to max(300s, base); never below the base.
      max_ejection_time_(std::max(policy.max_ejection_time, policy.base_ejection_time)),
      hosts_(hosts) {}

OutlierDetector::OutlierDetector(const routing::OutlierPolicy& policy, std::vector<Host> hosts)
    : OutlierDetector(policy, size_t{0}) {
  hosts_ = std::move(hosts);
  active_ejections_ =
      std::count_if(hosts_.begin(), hosts_.end(), [](const Host& h) { return h.ejected; });
}

absl::Duration OutlierDetector::EjectionTime(size_t host) const {
  return std::min(policy_.base_ejection_time * static_cast<int64_t>(hosts_[host].multiplier),
                  max_ejection_time_);
}

bool OutlierDetector::OnAttempt(size_t host, const AttemptEvent& event, absl::Time now) {
  if (host >= hosts_.size()) return false;
  Host& h = hosts_[host];
  bool ejected = false;
  switch (event.kind) {
    case AttemptEvent::Kind::kResponse:
      // In split mode a response is a local-origin success: the connection worked.
      if (policy_.split_external_local_origin_errors) h.consecutive_local = 0;
      CountStatus(host, event.status, now, &ejected);
      break;
    case AttemptEvent::Kind::kReset:
      CountStatus(host, 503, now, &ejected);  // an upstream transaction failure
      break;
    case AttemptEvent::Kind::kConnectFailure:
    case AttemptEvent::Kind::kTimeout:
      if (!policy_.split_external_local_origin_errors) {
        // Without split mode local-origin errors are counted as the codes Envoy maps them to.
        CountStatus(host, event.kind == AttemptEvent::Kind::kTimeout ? 504 : 503, now, &ejected);
      } else if (policy_.consecutive_local_origin_failures > 0 &&
                 ++h.consecutive_local == policy_.consecutive_local_origin_failures) {
        ejected = Eject(host, EjectionReason::kConsecutiveLocalOrigin,
                        policy_.enforce_consecutive_local_origin_failures, now);
        h.consecutive_local = 0;
      }
      break;
    case AttemptEvent::Kind::kNotCounted:
      break;
  }
  return ejected;
}

void OutlierDetector::CountStatus(size_t host, uint32_t status, absl::Time now, bool* ejected) {
  Host& h = hosts_[host];
  if (status < 500 || status > 599) {
    h.consecutive_5xx = 0;
    h.consecutive_gateway = 0;
    return;
  }
  if (status == 502 || status == 503 || status == 504) {
    // A threshold of 0 never fires: the counter is compared with ==, as in Envoy.
    if (++h.consecutive_gateway == policy_.consecutive_gateway_errors &&
        policy_.consecutive_gateway_errors > 0) {
      *ejected |= Eject(host, EjectionReason::kConsecutiveGatewayErrors,
                        policy_.enforce_consecutive_gateway_errors, now);
      h.consecutive_gateway = 0;
    }
  } else {
    h.consecutive_gateway = 0;
  }
  if (++h.consecutive_5xx == policy_.consecutive_5xx && policy_.consecutive_5xx > 0) {
    *ejected |= Eject(host, EjectionReason::kConsecutive5xx, policy_.enforce_consecutive_5xx, now);
    h.consecutive_5xx = 0;
  }
}

bool OutlierDetector::Eject(size_t host, EjectionReason reason, bool enforced, absl::Time now) {
  Host& h = hosts_[host];
  if (h.ejected) return false;
  // Current Envoy: eject only while (ejected + 1) / hosts stays within the percentage; an
  // overflow is counted even for detections that are not enforced.
  const uint64_t max_percent = std::min<uint32_t>(policy_.max_ejection_percent, 100);
  if (100 * (active_ejections_ + 1) > max_percent * hosts_.size()) {
    ++overflows_;
    return false;
  }
  if (!enforced) return false;
  h.ejected = true;
  h.reason = reason;
  h.last_ejection = now;
  ++h.ejections;
  ++active_ejections_;
  if (policy_.base_ejection_time * static_cast<int64_t>(h.multiplier) <
      max_ejection_time_ + policy_.base_ejection_time) {
    ++h.multiplier;
  }
  return true;
}

std::vector<size_t> OutlierDetector::OnInterval(absl::Time now) {
  std::vector<size_t> returned;
  for (size_t i = 0; i < hosts_.size(); ++i) {
    Host& h = hosts_[i];
    if (h.ejected) {
      if (now - h.last_ejection >= EjectionTime(i)) {
        h.ejected = false;
        h.reason = EjectionReason::kNone;
        h.consecutive_5xx = h.consecutive_gateway = h.consecutive_local = 0;
        h.last_unejection = now;
        --active_ejections_;
        returned.push_back(i);
      }
    } else if (h.multiplier > 0 && h.last_unejection != absl::InfinitePast() &&
               now - h.last_unejection >= policy_.interval) {
      --h.multiplier;
    }
  }
  return returned;
}

}  // namespace sluice::health
