#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/event/time_source.h"
#include "gateway/observability/access_log_writer.h"
#include "gateway/observability/gateway_metrics.h"
#include "gateway/observability/sluice_metrics.h"
#include "gateway/upstream/cluster_limits.h"
#include "gateway/upstream/dns_cache.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::gateway {

// What to do with a request when no decision comes (service unreachable, or no answer
// within the decision deadline).
struct DecisionFailurePolicy {
  enum class Kind { kDeny, kFallback };
  Kind kind = Kind::kDeny;
  std::string fallback_host;  // kFallback: every such request goes here, once, no retries
  uint16_t fallback_port = 0;
};

// sluice's own response flag for a request denied because no decision came. Not one of
// Envoy's flags (Envoy has no decision service); three letters like theirs.
inline constexpr char kDecisionUnavailableFlag[] = "DSU";
// ... and for a request forwarded to the fallback address because no decision came (policy
// `fallback`): such answers are told apart in the access log and Istio's metrics.
inline constexpr char kDecisionFallbackFlag[] = "DSF";
inline constexpr char kDecisionUnavailableBody[] =
    "no routing decision: decision service unavailable";

struct GatewayOptions {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 8080;
  std::string decision_address = "127.0.0.1:7070";
  std::string metrics_host = "127.0.0.1";
  uint16_t metrics_port = 15090;
  int workers = 1;
  // Workers' socket I/O through io_uring (reads and writes queued in a ring) instead of epoll.
  bool io_uring = false;
  DecisionFailurePolicy decision_failure;
  std::string access_log;  // path, "-" for stdout, empty for none
  // Each worker's access-log lines are written at least this often (Envoy's default).
  absl::Duration access_log_flush_interval = absl::Seconds(1);
  absl::Duration decision_deadline = absl::Milliseconds(250);
  // server: a decision per request from sluice-server; local: decided here on the table the
  // server pushes. Either way the last table serves while the server cannot be reached.
  v1::DecisionMode decision_mode = v1::DECISION_MODE_SERVER;
  // A table unconfirmed by the server for longer is not used (the failure policy applies).
  absl::Duration max_table_age = absl::InfiniteDuration();
  // Downstream limits and timers.
  uint32_t max_request_headers_bytes = 60 * 1024;  // Envoy's max_request_headers_kb default
  // Header fields of a request, Host included; more: 431 and close (Envoy's
  // max_request_headers_count default).
  uint32_t max_request_header_count = 100;
  uint64_t max_request_body_bytes = 16 * 1024 * 1024;
  // Request bodies up to this size are held for replay on retry; longer ones are streamed
  // upstream as they arrive and the request is not retried (Envoy's buffer limit rule).
  uint64_t retry_buffer_bytes = 64 * 1024;
  absl::Duration request_header_timeout = absl::Seconds(10);
  absl::Duration idle_timeout = absl::Seconds(60);
  absl::Duration drain_timeout = absl::Seconds(30);
  std::string gateway_name = "sluice-gateway";
  // Mirrored requests carry Host + "-shadow" (older Envoy and Istio); off by default, as
  // Istio 1.28 sets Envoy's disable_shadow_host_suffix_append.
  bool shadow_host_suffix = false;
  // Endpoint host names are resolved again this often (Envoy's dns_refresh_rate default).
  absl::Duration dns_refresh_rate = absl::Seconds(5);
};

// What all workers share.
struct GatewayContext {
  GatewayOptions options;
  IstioMetrics* istio_metrics = nullptr;
  SluiceGatewayMetrics* sluice_metrics = nullptr;
  AccessLogWriter* access_log = nullptr;  // null: no access log; a buffer per worker
  ClusterLimitsRegistry limits;
  DnsCache* dns = nullptr;  // endpoint host names, resolved off the workers' threads
  // Intervals (timeouts, latencies, idle times) read its monotonic clock; the wall clock is
  // for what shows a date (the access log's start time).
  event::TimeSource* clock = nullptr;
  std::atomic<bool> draining{false};
};

}  // namespace sluice::gateway
