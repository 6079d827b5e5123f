#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/common/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace sluice::gateway {

// The destination and outcome of one request, as the Istio metrics label it. Views: the
// caller's strings outlive the Record call.
struct RequestOutcome {
  absl::string_view destination_host;  // FQDN, e.g. reviews.default.svc.cluster.local
  absl::string_view subset;            // destination_version; empty when none
  uint32_t response_code = 0;          // 0: no response was sent
  absl::string_view response_flags = "-";
};

// Istio's standard metrics as a client-side sidecar (reporter="source") reports them, with
// Istio's label names and values and Envoy's default histogram buckets, so Istio's
// dashboards and Flagger's queries read them unchanged. Thread-safe; each label set's series
// are created once and cached.
class IstioMetrics {
 public:
  IstioMetrics(prometheus::Registry& registry, std::string workload, std::string namespace_name);

  void Record(const RequestOutcome& outcome, absl::Duration duration, uint64_t request_bytes,
              uint64_t response_bytes);

  // Envoy's default buckets (ms for durations, bytes for sizes).
  static const std::vector<double>& DefaultBuckets();

 private:
  struct Series {
    prometheus::Counter* requests;
    prometheus::Histogram* duration;
    prometheus::Histogram* request_bytes;
    prometheus::Histogram* response_bytes;
  };
  // A copy: another worker's insert may rehash `series_` as soon as the lock is released
  // (the metric objects themselves stay where prometheus-cpp put them).
  Series SeriesFor(const RequestOutcome& outcome);

  const std::string workload_;
  const std::string namespace_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Histogram>& request_bytes_;
  prometheus::Family<prometheus::Histogram>& response_bytes_;
  // A label set, as stored and as looked up (views: a request's lookup allocates nothing).
  struct SeriesKey {
    std::string host, subset;
    uint32_t code;
    std::string flags;
  };
  struct SeriesKeyView {
    absl::string_view host, subset;
    uint32_t code;
    absl::string_view flags;
    SeriesKeyView(const RequestOutcome& o)  // NOLINT: implicit, for lookups
        : host(o.destination_host),
          subset(o.subset),
          code(o.response_code),
          flags(o.response_flags) {}
    SeriesKeyView(const SeriesKey& k)  // NOLINT
        : host(k.host), subset(k.subset), code(k.code), flags(k.flags) {}
  };
  struct SeriesKeyHash {
    using is_transparent = void;
    size_t operator()(const SeriesKeyView& k) const {
      return absl::HashOf(k.host, k.subset, k.code, k.flags);
    }
  };
  struct SeriesKeyEq {
    using is_transparent = void;
    bool operator()(const SeriesKeyView& a, const SeriesKeyView& b) const {
      return a.code == b.code && a.host == b.host && a.subset == b.subset && a.flags == b.flags;
    }
  };
  Mutex mu_;
  absl::flat_hash_map<SeriesKey, Series, SeriesKeyHash, SeriesKeyEq> series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::gateway
