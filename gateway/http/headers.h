#pragma once

#include <cstdint>
#include <string>

#include "absl/random/bit_gen_ref.h"
#include "absl/strings/string_view.h"
#include "gateway/http/header_map.h"
#include "sluice/v1/decision.pb.h"

namespace sluice::gateway {

// Removes the hop-by-hop headers a proxy must not forward: Connection and every header it
// names, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade.
void StripHopByHop(http::HeaderMap& headers);

// Envoy's cleanInternalHeaders for requests from outside the mesh: the x-envoy-* headers that
// would let a client steer retries and timeouts are dropped.
void StripInternalRequestHeaders(http::HeaderMap& headers);

// What the gateway adds to a request it forwards.
// Views of the caller's strings, which outlive the SetForwardingHeaders call.
struct ForwardContext {
  absl::string_view client_address;  // appended to x-forwarded-for
  absl::string_view request_id;      // x-request-id
  uint32_t attempt = 1;              // x-envoy-attempt-count
  absl::string_view authority;       // new Host when rewritten; empty keeps it
  absl::string_view original_path;   // x-envoy-original-path when the path was rewritten
};
void SetForwardingHeaders(http::HeaderMap& headers, const ForwardContext& context);

// Istio's header operations: set replaces, add appends another value, remove deletes.
void ApplyHeaderMutation(http::HeaderMap& headers, const v1::HeaderMutation& mutation);

// A random (version 4) UUID, as Envoy generates for x-request-id.
std::string NewRequestId(absl::BitGenRef rng);
// The same, written over `id` (whose buffer a reused string keeps: no allocation).
void NewRequestId(absl::BitGenRef rng, std::string& id);

}  // namespace sluice::gateway
