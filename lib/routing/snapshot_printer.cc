#include "lib/routing/snapshot_printer.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "lib/config/duration.h"

namespace sluice::routing {
namespace {

std::string Plural(size_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

std::string DescribeDestination(const RouteDestination& d) {
  std::string out = d.host;
  if (!d.subset.empty()) absl::StrAppend(&out, " subset ", d.subset);
  if (d.cluster == nullptr) {
    absl::StrAppend(&out, " (no such cluster: 503 NC)");
  } else {
    absl::StrAppend(&out, " (", Plural(d.cluster->endpoints.size(), "endpoint", "endpoints"), ")");
  }
  return out;
}

std::string DescribeFault(const config::HTTPFaultInjection& f) {
  std::vector<std::string> parts;
  if (f.delay && f.delay->fixed_delay) {
    parts.push_back(absl::StrCat(
        "delay ", config::FormatDuration(*f.delay->fixed_delay), " for ",
        f.delay->percentage ? FormatPercent(*f.delay->percentage) : std::string("0%")));
  }
  if (f.abort) {
    const std::string what = f.abort->http_status ? absl::StrCat("HTTP ", *f.abort->http_status)
                                                  : absl::StrCat("gRPC ", f.abort->grpc_status);
    parts.push_back(absl::StrCat(
        "abort ", what, " for ",
        f.abort->percentage ? FormatPercent(*f.abort->percentage) : std::string("0%")));
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace

std::string FormatPercent(const config::FractionalPercent& p) {
  const double percent = 100.0 * p.numerator / p.denominator;
  return absl::StrCat(absl::StrFormat("%.4g", percent), "%");
}

SnapshotSummary Summarize(const Snapshot& snapshot) {
  SnapshotSummary s;
  s.hosts = snapshot.virtual_hosts().size();
  for (const VirtualHost& h : snapshot.virtual_hosts()) s.routes += h.routes.size();
  for (const config::DestinationRule& dr : snapshot.source().destination_rules) {
    s.subsets += dr.subsets.size();
  }
  std::set<std::string> endpoints;
  for (const auto& c : snapshot.clusters()) {
    for (const Endpoint& e : c->endpoints) endpoints.insert(e.id);
  }
  s.endpoints = endpoints.size();
  s.canaries = snapshot.source().canaries.size();
  return s;
}

std::string FormatSummary(const SnapshotSummary& s) {
  return absl::StrCat(Plural(s.hosts, "host", "hosts"), ", ", Plural(s.routes, "route", "routes"),
                      ", ", Plural(s.subsets, "subset", "subsets"), ", ",
                      Plural(s.endpoints, "endpoint", "endpoints"), ", ",
                      Plural(s.canaries, "canary", "canaries"));
}

std::string DescribeSnapshot(const Snapshot& snapshot) {
  std::string out = absl::StrCat("configuration version ", snapshot.version(), ": ",
                                 FormatSummary(Summarize(snapshot)), "\n");
  for (const VirtualHost& host : snapshot.virtual_hosts()) {
    absl::StrAppend(&out, "\nhost ", host.name, "\n");
    for (const Route& r : host.routes) {
      absl::StrAppend(&out, "  route ", r.display_name);
      if (!r.location.file.empty()) {
        absl::StrAppend(&out, "  (", r.location.file, ":", r.location.line, ")");
      }
      out += "\n";
      std::vector<std::string> matches;
      for (const RouteMatcher& m : r.matches) matches.push_back(m.Describe());
      absl::StrAppend(&out, "    match    ",
                      matches.empty() ? "every request" : absl::StrJoin(matches, " | or | "), "\n");
      switch (r.action) {
        case RouteAction::kForward:
          for (const RouteDestination& d : r.weights.destinations()) {
            absl::StrAppend(
                &out, "    to       ",
                absl::StrFormat("%5.1f%%  ", 100.0 * d.weight / r.weights.total_weight()),
                DescribeDestination(d), "\n");
          }
          break;
        case RouteAction::kRedirect:
          absl::StrAppend(&out, "    redirect ", r.redirect->redirect_code, " ",
                          r.redirect->authority, r.redirect->uri, "\n");
          break;
        case RouteAction::kDirectResponse:
          absl::StrAppend(&out, "    respond  ", r.direct_response->status, "\n");
          break;
      }
      absl::StrAppend(
          &out, "    timeout  ",
          r.timeout == absl::ZeroDuration() ? "none" : config::FormatDuration(r.timeout), "\n");
      if (r.retry.num_retries == 0) {
        out += "    retries  none\n";
      } else {
        absl::StrAppend(&out, "    retries  ", r.retry.num_retries, " on ",
                        RetryOnToString(r.retry.retry_on));
        if (!r.retry.retriable_status_codes.empty()) {
          absl::StrAppend(&out, " (codes ", absl::StrJoin(r.retry.retriable_status_codes, ","),
                          ")");
        }
        if (r.retry.per_try_timeout > absl::ZeroDuration()) {
          absl::StrAppend(&out, ", per try ", config::FormatDuration(r.retry.per_try_timeout));
        }
        out += "\n";
      }
      if (r.fault) absl::StrAppend(&out, "    fault    ", DescribeFault(*r.fault), "\n");
      for (const Mirror& m : r.mirrors) {
        absl::StrAppend(&out, "    mirror   ", FormatPercent(m.percentage), " to ",
                        DescribeDestination(m.destination), "\n");
      }
    }
  }
  if (!snapshot.clusters().empty()) out += "\nclusters\n";
  for (const auto& c : snapshot.clusters()) {
    const TrafficPolicy& p = c->policy;
    absl::StrAppend(&out, "  ", c->name, "  ", LoadBalancerName(p.load_balancer));
    if (p.outlier.enabled) {
      absl::StrAppend(&out, ", outlier detection (", p.outlier.consecutive_5xx,
                      " consecutive 5xx, max ", p.outlier.max_ejection_percent, "% ejected)");
    }
    if (p.connection_pool.max_connections != kUnlimited) {
      absl::StrAppend(&out, ", max ", p.connection_pool.max_connections, " connections");
    }
    out += "\n";
    for (const Endpoint& e : c->endpoints) {
      std::vector<std::string> labels;
      for (const auto& [k, v] : e.labels) labels.push_back(absl::StrCat(k, "=", v));
      absl::StrAppend(&out, "    ", e.id, "  ", absl::StrJoin(labels, ","), "\n");
    }
  }
  for (const config::Canary& c : snapshot.source().canaries) {
    absl::StrAppend(&out, "\ncanary ", c.meta.namespace_name, "/", c.meta.name, ": host ", c.host,
                    ", stable ", c.stable_subset, ", canary ", c.canary_subset, ", steps ",
                    absl::StrJoin(c.analysis.step_weights, ","), "% every ",
                    config::FormatDuration(c.analysis.interval), ", rollback after ",
                    c.analysis.threshold, " failed check(s)\n");
  }
  return out;
}

}  // namespace sluice::routing
