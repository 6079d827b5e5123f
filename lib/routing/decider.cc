#include "lib/routing/decider.h"

#include <algorithm>

#include "absl/random/distributions.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/config/duration.h"
#include "lib/config/host_names.h"
#include "lib/routing/snapshot_printer.h"

namespace sluice::routing {
namespace {

constexpr char kNoHealthyUpstream[] = "no healthy upstream";

void LocalReply(Decision& d, uint32_t status, const char* flags, std::string body = "") {
  d.kind = Decision::Kind::kDirectResponse;
  d.status = status;
  d.response_flags = flags;
  d.body = std::move(body);
}

// The first route with a matching block, and that block (nullptr for a match-less route).
const Route* MatchRoute(const VirtualHost& host, const RequestView& view,
                        const RouteMatcher** matched, DecisionTrace* trace) {
  for (const Route& route : host.routes) {
    if (route.matches.empty()) {
      if (trace != nullptr) {
        trace->steps.push_back({route.display_name, "every request", true, "no match conditions"});
      }
      *matched = nullptr;
      return &route;
    }
    for (const RouteMatcher& m : route.matches) {
      if (trace == nullptr) {
        if (m.Matches(view)) {
          *matched = &m;
          return &route;
        }
        continue;
      }
      std::string reason;
      const bool ok = m.Explain(view, &reason);
      trace->steps.push_back(
          {route.display_name, m.Describe(), ok, ok ? "all conditions hold" : reason});
      if (ok) {
        *matched = &m;
        return &route;
      }
    }
  }
  return nullptr;
}

// Envoy's prefix_rewrite replaces the matched prefix for a prefix match and the whole path
// (query kept) otherwise; regex_rewrite substitutes over the path without its query.
std::string RewritePath(const Rewrite& rw, const RouteMatcher* matched, const RequestView& view) {
  const std::string& path = view.request().path;
  const absl::string_view query = absl::string_view(path).substr(view.path_without_query().size());
  if (rw.regex != nullptr) {
    std::string rewritten(view.path_without_query());
    RE2::GlobalReplace(&rewritten, *rw.regex, rw.regex_substitution);
    return absl::StrCat(rewritten, query);
  }
  if (rw.uri.empty()) return "";
  const std::optional<StringMatcher>* uri = matched != nullptr ? &matched->uri() : nullptr;
  if (uri == nullptr || !uri->has_value()) {
    // No uri condition is Istio's prefix "/".
    return absl::StrCat(rw.uri, absl::string_view(path).substr(1));
  }
  if ((*uri)->kind() == config::StringMatch::Kind::kPrefix) {
    return absl::StrCat(rw.uri, absl::string_view(path).substr((*uri)->value().size()));
  }
  return absl::StrCat(rw.uri, query);
}

std::string RedirectLocation(const config::HTTPRedirect& r, const RequestView& view) {
  const RequestAttributes& req = view.request();
  const std::string scheme = r.scheme.empty() ? req.scheme : r.scheme;
  std::string host(r.authority.empty() ? view.host() : absl::string_view(r.authority));
  uint32_t port = 0;
  if (r.port) {
    port = *r.port;
  } else if (r.derive_port == config::HTTPRedirect::DerivePort::kFromRequestPort) {
    port = view.port();
  } else if (r.derive_port == config::HTTPRedirect::DerivePort::kUnset && r.authority.empty() &&
             scheme == req.scheme) {
    port = view.port();
  }
  const bool default_port =
      port == 0 || (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
  std::string path = req.path;
  if (!r.uri.empty()) {
    const absl::string_view query =
        absl::string_view(req.path).substr(view.path_without_query().size());
    path = r.uri.find('?') == std::string::npos ? absl::StrCat(r.uri, query) : r.uri;
  }
  return absl::StrCat(scheme, "://", host, default_port ? "" : absl::StrCat(":", port), path);
}

void SampleFault(const config::HTTPFaultInjection& fault, absl::BitGenRef rng, Decision& d,
                 DecisionTrace* trace) {
  // Envoy draws the delay first and the abort independently, each with a fresh number.
  if (fault.delay && fault.delay->fixed_delay && fault.delay->percentage) {
    const bool fire = SampleFraction(*fault.delay->percentage, rng);
    if (fire) d.delay = *fault.delay->fixed_delay;
    if (trace != nullptr) {
      absl::StrAppend(
          &trace->fault_draw, "delay ", config::FormatDuration(*fault.delay->fixed_delay), " at ",
          FormatPercent(*fault.delay->percentage), ": ", fire ? "fired" : "not fired", ". ");
    }
  }
  if (fault.abort && fault.abort->percentage &&
      (fault.abort->http_status || !fault.abort->grpc_status.empty())) {
    const bool fire = SampleFraction(*fault.abort->percentage, rng);
    if (fire) {
      d.abort_http_status = fault.abort->http_status.value_or(0);
      d.abort_grpc_status = fault.abort->grpc_status;
    }
    if (trace != nullptr) {
      absl::StrAppend(&trace->fault_draw, "abort at ", FormatPercent(*fault.abort->percentage),
                      ": ", fire ? "fired" : "not fired", ".");
    }
  }
}

using Candidates = absl::InlinedVector<uint32_t, 16>;

// Endpoints the load balancer may choose: the non-ejected ones, or all of them when the
// healthy share is below the panic threshold (Envoy's panic mode). Empty means 503 UH.
Candidates ChooseCandidates(const Cluster& cluster, bool* panic) {
  Candidates healthy;
  for (uint32_t i = 0; i < cluster.endpoints.size(); ++i) {
    if (!cluster.endpoints[i].runtime->ejected.load(std::memory_order_relaxed)) {
      healthy.push_back(i);
    }
  }
  *panic = false;
  const size_t total = cluster.endpoints.size();
  const uint32_t threshold = cluster.policy.outlier.healthy_panic_threshold;
  // Envoy considers panic only while the overprovisioned availability, min(100, 1.4 x
  // healthy%), is below 100%, and then compares the healthy share with the threshold.
  const bool degraded = healthy.size() * 140 < total * 100;
  if (total > 0 && threshold > 0 && degraded && healthy.size() * 100 < threshold * total) {
    *panic = true;
    Candidates all;
    for (uint32_t i = 0; i < total; ++i) all.push_back(i);
    return all;
  }
  return healthy;
}

int32_t InFlight(const Cluster& c, uint32_t i) {
  return c.endpoints[i].runtime->in_flight.load(std::memory_order_relaxed);
}

bool EqualWeights(const Cluster& c, const Candidates& candidates) {
  for (uint32_t i : candidates) {
    if (c.endpoints[i].weight != c.endpoints[candidates[0]].weight) return false;
  }
  return true;
}

// The candidate whose cumulative weight range holds `point` (< total weight).
uint32_t WeightedAt(const Cluster& c, const Candidates& candidates, uint64_t point) {
  for (uint32_t i : candidates) {
    if (point < c.endpoints[i].weight) return i;
    point -= c.endpoints[i].weight;
  }
  return candidates.back();
}

uint64_t TotalWeight(const Cluster& c, const Candidates& candidates) {
  uint64_t total = 0;
  for (uint32_t i : candidates) total += c.endpoints[i].weight;
  return total;
}

// One pick by the cluster's load balancer among `candidates` (not empty).
uint32_t PickEndpoint(const Cluster& cluster, const Candidates& candidates, absl::BitGenRef rng) {
  const size_t n = candidates.size();
  if (n == 1) return candidates[0];
  const bool equal = EqualWeights(cluster, candidates);
  switch (cluster.policy.load_balancer) {
    case LoadBalancer::kRoundRobin: {
      const uint64_t turn = cluster.runtime->round_robin.fetch_add(1, std::memory_order_relaxed);
      if (equal) return candidates[turn % n];
      // Weighted round robin: each window of total-weight turns gives every endpoint its
      // weight's share, as Envoy's EDF schedule does.
      return WeightedAt(cluster, candidates, turn % TotalWeight(cluster, candidates));
    }
    case LoadBalancer::kRandom:
      if (equal) return candidates[absl::Uniform<size_t>(rng, 0, n)];
      return WeightedAt(cluster, candidates,
                        absl::Uniform<uint64_t>(rng, 0, TotalWeight(cluster, candidates)));
    case LoadBalancer::kLeastRequest: {
      if (equal) {
        // Envoy's power of two choices: two random picks, the one with fewer requests wins.
        const uint32_t a = candidates[absl::Uniform<size_t>(rng, 0, n)];
        const uint32_t b = candidates[absl::Uniform<size_t>(rng, 0, n)];
        return InFlight(cluster, b) < InFlight(cluster, a) ? b : a;
      }
      // Unequal weights: Envoy schedules by effective weight weight / (active + 1). A draw
      // proportional to it gives the same shares.
      double total = 0;
      for (uint32_t i : candidates) {
        total += static_cast<double>(cluster.endpoints[i].weight) / (InFlight(cluster, i) + 1);
      }
      double point = absl::Uniform<double>(rng, 0.0, total);
      for (uint32_t i : candidates) {
        point -= static_cast<double>(cluster.endpoints[i].weight) / (InFlight(cluster, i) + 1);
        if (point < 0) return i;
      }
      return candidates.back();
    }
  }
  return candidates[0];
}

// Hosts for retries. Round robin takes the candidates that follow the primary in rotation
// without advancing the shared counter: Envoy picks a retry host only when a retry happens,
// so precomputing alternates must not skew first attempts.
void PickAlternates(const Cluster& cluster, const Candidates& candidates, uint32_t primary,
                    uint32_t count, absl::BitGenRef rng, absl::InlinedVector<uint32_t, 4>& out) {
  if (cluster.policy.load_balancer == LoadBalancer::kRoundRobin) {
    const auto at = std::find(candidates.begin(), candidates.end(), primary);
    const size_t start = static_cast<size_t>(at - candidates.begin());
    for (size_t k = 1; k < candidates.size() && out.size() < count; ++k) {
      out.push_back(candidates[(start + k) % candidates.size()]);
    }
    return;
  }
  Candidates rest = candidates;
  rest.erase(std::remove(rest.begin(), rest.end(), primary), rest.end());
  while (!rest.empty() && out.size() < count) {
    const uint32_t next = PickEndpoint(cluster, rest, rng);
    out.push_back(next);
    rest.erase(std::remove(rest.begin(), rest.end(), next), rest.end());
  }
}

}  // namespace

bool SampleFraction(const config::FractionalPercent& p, absl::BitGenRef rng) {
  if (p.numerator == 0) return false;
  if (p.numerator >= p.denominator) return true;
  return absl::Uniform<uint32_t>(rng, 0, p.denominator) < p.numerator;
}

Decision Decide(const Snapshot& snapshot, const RequestAttributes& request, absl::BitGenRef rng,
                DecisionTrace* trace) {
  Decision d;
  const RequestView view(request);
  d.virtual_host = snapshot.FindVirtualHost(request.authority);
  if (d.virtual_host == nullptr) {
    if (trace != nullptr) trace->virtual_host = "(none: no host matches the authority)";
    LocalReply(d, 404, "NR");
    return d;
  }
  if (trace != nullptr) trace->virtual_host = d.virtual_host->name;
  const RouteMatcher* matched = nullptr;
  d.route = MatchRoute(*d.virtual_host, view, &matched, trace);
  if (d.route == nullptr) {
    LocalReply(d, 404, "NR");
    return d;
  }
  const Route& route = *d.route;
  if (route.action == RouteAction::kRedirect) {
    d.kind = Decision::Kind::kRedirect;
    d.status = route.redirect->redirect_code;
    d.location = RedirectLocation(*route.redirect, view);
    return d;
  }
  if (route.action == RouteAction::kDirectResponse) {
    LocalReply(d, route.direct_response->status, "", route.direct_response->body.value_or(""));
    return d;
  }

  // Route resolution picks the weighted cluster before any filter runs.
  const WeightTable& weights = route.weights;
  size_t pick = 0;
  if (weights.destinations().size() > 1) {
    const uint64_t random = absl::Uniform<uint64_t>(rng, 0, weights.total_weight());
    pick = weights.Pick(random);
    if (trace != nullptr) {
      trace->weight_draw = absl::StrCat(
          "random ", random, " of total weight ", weights.total_weight(), " -> ",
          weights.destinations()[pick].subset.empty() ? weights.destinations()[pick].host
                                                      : weights.destinations()[pick].subset);
    }
  } else if (trace != nullptr) {
    trace->weight_draw = "single destination";
  }
  d.destination = &weights.destinations()[pick];

  // The fault filter runs before the router: an abort never needs a cluster or an endpoint.
  if (route.fault) SampleFault(*route.fault, rng, d, trace);
  if (d.abort_http_status != 0 || !d.abort_grpc_status.empty()) {
    d.kind = Decision::Kind::kForward;  // executed by the gateway as an abort (flag FI)
    d.cluster = d.destination->cluster;
    return d;
  }

  d.cluster = d.destination->cluster;
  if (d.cluster == nullptr) {
    LocalReply(d, 503, "NC");
    if (trace != nullptr) {
      trace->endpoint_choice = absl::StrCat("cluster ", d.destination->cluster_name,
                                            " does not exist (no such service or subset)");
    }
    return d;
  }
  bool panic = false;
  Candidates candidates = ChooseCandidates(*d.cluster, &panic);
  if (candidates.empty()) {
    LocalReply(d, 503, "UH", kNoHealthyUpstream);
    if (trace != nullptr) {
      trace->endpoint_choice = absl::StrCat("no healthy endpoint in ", d.cluster->name);
    }
    return d;
  }
  d.kind = Decision::Kind::kForward;
  d.endpoint_index = static_cast<int>(PickEndpoint(*d.cluster, candidates, rng));
  if (trace != nullptr) {
    trace->endpoint_choice =
        absl::StrCat(LoadBalancerName(d.cluster->policy.load_balancer), " chose ",
                     d.cluster->endpoints[d.endpoint_index].id, " of ", candidates.size(),
                     " candidate(s)", panic ? " (panic mode: every endpoint)" : "");
  }

  // Alternates for retries: other hosts first, picked by the same balancer, then the
  // primary again when the cluster has fewer hosts than retries.
  if (route.retry.num_retries > 0 && route.retry.retry_other_hosts) {
    PickAlternates(*d.cluster, candidates, static_cast<uint32_t>(d.endpoint_index),
                   route.retry.num_retries, rng, d.alternates);
  }

  for (const Mirror& mirror : route.mirrors) {
    if (mirror.destination.cluster == nullptr || mirror.destination.cluster->endpoints.empty()) {
      continue;
    }
    if (!SampleFraction(mirror.percentage, rng)) continue;
    d.mirror = &mirror;
    d.mirror_cluster = mirror.destination.cluster;
    bool mirror_panic = false;
    Candidates mc = ChooseCandidates(*d.mirror_cluster, &mirror_panic);
    if (mc.empty()) {
      d.mirror = nullptr;
      d.mirror_cluster = nullptr;
      continue;
    }
    d.mirror_endpoint_index = static_cast<int>(PickEndpoint(*d.mirror_cluster, mc, rng));
    break;  // the gateway carries one mirror per request
  }

  if (route.rewrite) {
    d.rewritten_path = RewritePath(*route.rewrite, matched, view);
    d.rewritten_authority = route.rewrite->authority;
  }
  return d;
}

}  // namespace sluice::routing
