#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/random/bit_gen_ref.h"
#include "lib/routing/request.h"
#include "lib/routing/snapshot.h"

namespace sluice::routing {

// What to do with one request. Points into the snapshot it was made from, which the caller
// keeps alive while it uses the decision.
struct Decision {
  enum class Kind { kForward, kDirectResponse, kRedirect };
  Kind kind = Kind::kDirectResponse;

  // Local replies (kDirectResponse, kRedirect): Envoy's status, body and response flag.
  uint32_t status = 0;
  std::string body;
  std::string location;
  const char* response_flags = "";  // "NR", "NC", "UH" or ""

  const VirtualHost* virtual_host = nullptr;
  const Route* route = nullptr;
  const RouteDestination* destination = nullptr;  // the weighted pick
  const Cluster* cluster = nullptr;
  int endpoint_index = -1;
  // Endpoints for retries, in order (Istio's previous-hosts predicate: other hosts first).
  absl::InlinedVector<uint32_t, 4> alternates;

  // The fault, already sampled.
  absl::Duration delay = absl::ZeroDuration();
  uint32_t abort_http_status = 0;
  std::string abort_grpc_status;

  const Mirror* mirror = nullptr;
  const Cluster* mirror_cluster = nullptr;
  int mirror_endpoint_index = -1;

  std::string rewritten_path;       // empty: unchanged
  std::string rewritten_authority;  // empty: unchanged
};

// Reasoning behind a decision, for Explain.
struct DecisionTrace {
  struct Step {
    std::string route;
    std::string match;
    bool matched = false;
    std::string reason;
  };
  std::string virtual_host;
  std::vector<Step> steps;
  std::string weight_draw;
  std::string fault_draw;
  std::string endpoint_choice;
};

// Decides what to do with a request, exactly as Istio's Envoy configuration would: first
// matching route (404 NR if none), weighted destination (random % total weight over the
// cumulative ranges), fault (delay and abort drawn independently, parts per million),
// cluster (503 NC if it does not exist), endpoint by the cluster's load balancer over
// non-ejected endpoints (503 UH if none, unless in panic), retry alternates, mirror.
// Pure: all randomness comes from `rng`; endpoint load and health are read, never written.
Decision Decide(const Snapshot& snapshot, const RequestAttributes& request, absl::BitGenRef rng,
                DecisionTrace* trace = nullptr);

// Envoy's `random % denominator < numerator`, with the random number from `rng`.
bool SampleFraction(const config::FractionalPercent& p, absl::BitGenRef rng);

}  // namespace sluice::routing
