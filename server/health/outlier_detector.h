#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "lib/routing/policies.h"

namespace sluice::health {

// What one attempt tells about its endpoint.
struct AttemptEvent {
  enum class Kind {
    kResponse,        // an HTTP response: see status
    kConnectFailure,  // local origin: the connection could not be made
    kTimeout,         // local origin: no response in time
    kReset,           // the upstream ended the exchange before a response (counts as 503)
    kNotCounted,      // overflow, injected abort, client gone: says nothing about the endpoint
  };
  Kind kind = Kind::kResponse;
  uint32_t status = 0;
};

enum class EjectionReason {
  kNone,
  kConsecutive5xx,
  kConsecutiveGatewayErrors,
  kConsecutiveLocalOrigin
};
const char* EjectionReasonName(EjectionReason reason);
// The reason EjectionReasonName names (kNone for any other text).
EjectionReason EjectionReasonFromName(std::string_view name);

// Envoy's consecutive-error outlier detection for one cluster (outlier_detection_impl.cc,
// as written down in shared/reference/destinationrule-outlier-metrics.md 4.2): counters per
// endpoint fire when they reach their threshold exactly and eject at once; ejections last
// base x multiplier (capped by the maximum), end on the interval tick, and the multiplier
// decays by one per tick of health. Pure: time comes in with every call.
class OutlierDetector {
 public:
  struct Host {
    uint32_t consecutive_5xx = 0;
    uint32_t consecutive_gateway = 0;
    uint32_t consecutive_local = 0;
    bool ejected = false;
    EjectionReason reason = EjectionReason::kNone;
    uint32_t multiplier = 0;
    uint32_t ejections = 0;
    absl::Time last_ejection = absl::InfinitePast();
    absl::Time last_unejection = absl::InfinitePast();  // InfinitePast: never
  };

  OutlierDetector(const routing::OutlierPolicy& policy, size_t hosts);
  // Carries endpoint state over a configuration change (new policy or endpoint set).
  OutlierDetector(const routing::OutlierPolicy& policy, std::vector<Host> hosts);

  // Counts the attempt's outcome; returns true when it ejected the endpoint just now.
  bool OnAttempt(size_t host, const AttemptEvent& event, absl::Time now);
  // The interval tick: ends the ejections whose time is up (returned), then lets the
  // multiplier of every endpoint healthy for an interval decay by one.
  std::vector<size_t> OnInterval(absl::Time now);

  // How long the current (or next) ejection of `host` lasts.
  absl::Duration EjectionTime(size_t host) const;
  const Host& host(size_t i) const { return hosts_[i]; }
  const std::vector<Host>& hosts() const { return hosts_; }
  const routing::OutlierPolicy& policy() const { return policy_; }
  size_t size() const { return hosts_.size(); }
  size_t ejected_count() const { return active_ejections_; }
  uint64_t overflows() const { return overflows_; }

 private:
  void CountStatus(size_t host, uint32_t status, absl::Time now, bool* ejected);
  // Envoy's ejectHost: within maxEjectionPercent (else an overflow), and only if enforced.
  bool Eject(size_t host, EjectionReason reason, bool enforced, absl::Time now);

  routing::OutlierPolicy policy_;
  absl::Duration max_ejection_time_;
  std::vector<Host> hosts_;
  size_t active_ejections_ = 0;
  uint64_t overflows_ = 0;
};

}  // namespace sluice::health
