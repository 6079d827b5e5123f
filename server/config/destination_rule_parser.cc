#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/config/duration.h"
#include "lib/config/host_names.h"
#include "server/config/parsers.h"

namespace sluice::config {
namespace {

std::optional<int32_t> ReadCount(const Field& f, const ParseContext& ctx) {
  std::optional<int64_t> v = ReadInt(f, ctx, 0, INT32_MAX);
  if (!v) return std::nullopt;
  return static_cast<int32_t>(*v);
}

std::optional<uint32_t> ReadUint32(const Field& f, const ParseContext& ctx) {
  std::optional<int64_t> v = ReadInt(f, ctx, 0, UINT32_MAX);
  if (!v) return std::nullopt;
  return static_cast<uint32_t>(*v);
}

std::optional<int32_t> ReadPercentInt(const Field& f, const ParseContext& ctx) {
  std::optional<int64_t> v = ReadInt(f, ctx, 0, 100);
  if (!v) return std::nullopt;
  return static_cast<int32_t>(*v);
}

std::optional<LoadBalancerSettings> ParseLoadBalancer(const Field& f, const ParseContext& ctx) {
  LoadBalancerSettings out;
  MapReader m(f, ctx);
  if (!m.ok()) return std::nullopt;
  std::optional<Field> simple = m.Get("simple");
  if (simple) {
    std::string s = ReadString(*simple, ctx).value_or("");
    if (s == "UNSPECIFIED") {
      out.simple = LoadBalancerKind::kUnspecified;
    } else if (s == "LEAST_REQUEST" || s == "LEAST_CONN") {
      out.simple = LoadBalancerKind::kLeastRequest;
      if (s == "LEAST_CONN") {
        ctx.Warning(simple->node, simple->path, "LEAST_CONN is deprecated; use LEAST_REQUEST");
      }
    } else if (s == "ROUND_ROBIN") {
      out.simple = LoadBalancerKind::kRoundRobin;
    } else if (s == "RANDOM") {
      out.simple = LoadBalancerKind::kRandom;
    } else if (s == "PASSTHROUGH") {
      out.simple = LoadBalancerKind::kPassthrough;
      ctx.Warning(simple->node, simple->path,
                  "PASSTHROUGH has no meaning without a mesh; sluice balances it as "
                  "LEAST_REQUEST");
    } else {
      ctx.Error(simple->node, simple->path,
                absl::StrCat("\"", s,
                             "\" is not one of UNSPECIFIED, LEAST_REQUEST, LEAST_CONN, "
                             "ROUND_ROBIN, RANDOM, PASSTHROUGH"));
    }
  }
  if (auto ch = m.Get("consistentHash")) {
    out.consistent_hash = true;
    if (simple) ctx.Error(ch->node, ch->path, "cannot be set together with simple");
    MapReader cm(*ch, ctx);
    int keys = 0;
    for (const char* key : {"httpHeaderName", "httpQueryParameterName"}) {
      if (auto v = cm.Get(key)) {
        ++keys;
        ReadString(*v, ctx);
      }
    }
    if (auto v = cm.Get("useSourceIp")) {
      ++keys;
      ReadBool(*v, ctx);
    }
    if (auto v = cm.Get("httpCookie")) {
      ++keys;
      MapReader cookie(*v, ctx);
      if (!cookie.Has("name")) ctx.Error(v->node, JoinPath(v->path, "name"), "is required");
      cookie.Ignore("name");
      cookie.Ignore("path");
      if (auto ttl = cookie.Get("ttl")) ReadAnyDuration(*ttl, ctx);
      cookie.Ignore("attributes");
    }
    if (keys != 1 && cm.ok()) {
      ctx.Error(ch->node, ch->path,
                "must set exactly one of httpHeaderName, httpCookie, useSourceIp or "
                "httpQueryParameterName");
    }
    cm.Ignore("ringHash");
    cm.Ignore("maglev");
    cm.Ignore("minimumRingSize");
    ctx.Notice(ch->node, ch->path,
               "consistent-hash balancing is not implemented by sluice; endpoints are chosen "
               "by LEAST_REQUEST");
  }
  m.Ignore("localityLbSetting",
           "locality load balancing is not applied: sluice endpoints carry no locality");
  if (auto v = m.Get("warmupDurationSecs")) ReadAnyDuration(*v, ctx);
  m.Ignore("warmup");
  return out;
}

std::optional<ConnectionPoolSettings> ParseConnectionPool(const Field& f, const ParseContext& ctx) {
  ConnectionPoolSettings out;
  MapReader m(f, ctx);
  if (!m.ok()) return std::nullopt;
  if (auto t = m.Get("tcp")) {
    ConnectionPoolSettings::Tcp tcp;
    MapReader tm(*t, ctx);
    if (auto v = tm.Get("maxConnections")) tcp.max_connections = ReadCount(*v, ctx);
    if (auto v = tm.Get("connectTimeout")) tcp.connect_timeout = ReadIstioDuration(*v, ctx);
    // tcp.idleTimeout of 0s is legal (it disables the timeout); http.idleTimeout's is not.
    if (auto v = tm.Get("idleTimeout")) {
      tcp.idle_timeout = ReadAnyDuration(*v, ctx);
      if (tcp.idle_timeout && *tcp.idle_timeout >= absl::Milliseconds(1)) {
        if (std::string problem = CheckIstioDuration(*tcp.idle_timeout); !problem.empty()) {
          ctx.Error(v->node, v->path, problem);
        }
      }
    }
    if (auto v = tm.Get("maxConnectionDuration")) {
      tcp.max_connection_duration = ReadIstioDuration(*v, ctx);
    }
    if (auto v = tm.Get("tcpKeepalive")) {
      MapReader km(*v, ctx);
      if (auto p = km.Get("probes")) ReadUint32(*p, ctx);
      if (auto d = km.Get("time")) ReadIstioDuration(*d, ctx);
      if (auto d = km.Get("interval")) ReadIstioDuration(*d, ctx);
    }
    out.tcp = tcp;
  }
  if (auto h = m.Get("http")) {
    ConnectionPoolSettings::Http http;
    MapReader hm(*h, ctx);
    if (auto v = hm.Get("http1MaxPendingRequests")) {
      http.http1_max_pending_requests = ReadCount(*v, ctx);
    }
    if (auto v = hm.Get("http2MaxRequests")) http.http2_max_requests = ReadCount(*v, ctx);
    if (auto v = hm.Get("maxRequestsPerConnection")) {
      http.max_requests_per_connection = ReadCount(*v, ctx);
    }
    if (auto v = hm.Get("maxRetries")) http.max_retries = ReadCount(*v, ctx);
    if (auto v = hm.Get("maxConcurrentStreams")) http.max_concurrent_streams = ReadCount(*v, ctx);
    if (auto v = hm.Get("idleTimeout")) http.idle_timeout = ReadIstioDuration(*v, ctx);
    std::optional<Field> upgrade = hm.Get("h2UpgradePolicy");
    std::string policy;
    if (upgrade) {
      policy = ReadString(*upgrade, ctx).value_or("");
      if (policy != "DEFAULT" && policy != "DO_NOT_UPGRADE" && policy != "UPGRADE") {
        ctx.Error(upgrade->node, upgrade->path, "must be DEFAULT, DO_NOT_UPGRADE or UPGRADE");
      }
    }
    if (auto v = hm.Get("useClientProtocol")) {
      if (ReadBool(*v, ctx).value_or(false) && policy == "UPGRADE") {
        ctx.Error(v->node, v->path, "cannot be true when h2UpgradePolicy is UPGRADE");
      }
    }
    out.http = http;
  }
  if (!m.Has("tcp") && !m.Has("http")) {
    ctx.Error(f.node, f.path, "must set http, tcp or both");
  }
  return out;
}

std::optional<OutlierDetection> ParseOutlierDetection(const Field& f, const ParseContext& ctx) {
  OutlierDetection out;
  out.path = f.path;
  out.location = ctx.At(f.node);
  MapReader m(f, ctx);
  if (!m.ok()) return std::nullopt;
  if (auto v = m.Get("consecutiveErrors")) {
    ReadUint32(*v, ctx);
    ctx.Warning(v->node, v->path,
                "consecutiveErrors is deprecated and ignored (as Istio does); use "
                "consecutive5xxErrors");
  }
  if (auto v = m.Get("consecutive5xxErrors")) out.consecutive_5xx_errors = ReadUint32(*v, ctx);
  if (auto v = m.Get("consecutiveGatewayErrors")) {
    out.consecutive_gateway_errors = ReadUint32(*v, ctx);
  }
  std::optional<Field> local = m.Get("consecutiveLocalOriginFailures");
  if (local) out.consecutive_local_origin_failures = ReadUint32(*local, ctx);
  if (auto v = m.Get("splitExternalLocalOriginErrors")) {
    out.split_external_local_origin_errors = ReadBool(*v, ctx).value_or(false);
  }
  if (local && out.consecutive_local_origin_failures.value_or(0) > 0 &&
      !out.split_external_local_origin_errors) {
    ctx.Error(local->node, local->path, "requires splitExternalLocalOriginErrors: true");
  }
  if (auto v = m.Get("interval")) out.interval = ReadIstioDuration(*v, ctx);
  if (auto v = m.Get("baseEjectionTime")) out.base_ejection_time = ReadIstioDuration(*v, ctx);
  if (auto v = m.Get("maxEjectionPercent")) out.max_ejection_percent = ReadPercentInt(*v, ctx);
  if (auto v = m.Get("minHealthPercent")) out.min_health_percent = ReadPercentInt(*v, ctx);
  if (auto v = m.Get("outlierDetectionHttpErrorCodes")) {
    ForEachItem(*v, ctx, [&](const Field& item, size_t) { ReadInt(item, ctx, 100, 599); });
    ctx.Notice(v->node, v->path, "is not applied by sluice; every 5xx counts as an error");
  }
  if (out.consecutive_gateway_errors && out.consecutive_5xx_errors &&
      *out.consecutive_gateway_errors > 0 &&
      *out.consecutive_gateway_errors >= *out.consecutive_5xx_errors &&
      *out.consecutive_5xx_errors > 0) {
    ctx.Warning(f.node, JoinPath(f.path, "consecutiveGatewayErrors"),
                "has no effect when not below consecutive5xxErrors (every gateway error is "
                "also a 5xx)");
  }
  return out;
}

std::optional<TrafficPolicy> ParseTrafficPolicy(const Field& f, const ParseContext& ctx,
                                                bool port_level);

void ParsePortLevelSettings(const Field& f, const ParseContext& ctx) {
  ForEachItem(f, ctx, [&](const Field& item, size_t) {
    if (!item.node.IsMap()) {
      ctx.Error(item.node, item.path, "must be a mapping");
      return;
    }
    if (!std::as_const(item.node)["port"].IsDefined()) {
      ctx.Error(item.node, JoinPath(item.path, "port"), "is required");
    }
    ParseTrafficPolicy(item, ctx, /*port_level=*/true);
  });
}

std::optional<TrafficPolicy> ParseTrafficPolicy(const Field& f, const ParseContext& ctx,
                                                bool port_level) {
  TrafficPolicy out;
  MapReader m(f, ctx);
  if (!m.ok()) return std::nullopt;
  if (port_level) {
    if (auto p = m.Get("port")) {
      MapReader pm(*p, ctx);
      if (auto n = pm.Get("number")) {
        ReadInt(*n, ctx, 1, 65535);
      } else if (pm.ok()) {
        ctx.Error(p->node, JoinPath(p->path, "number"), "is required");
      }
    }
  }
  if (auto v = m.Get("loadBalancer")) out.load_balancer = ParseLoadBalancer(*v, ctx);
  if (auto v = m.Get("connectionPool")) out.connection_pool = ParseConnectionPool(*v, ctx);
  if (auto v = m.Get("outlierDetection")) out.outlier_detection = ParseOutlierDetection(*v, ctx);
  out.has_tls = m.Has("tls");
  m.Ignore("tls", "TLS origination is not performed by sluice; the tls block is ignored");
  if (!port_level) {
    if (auto v = m.Get("portLevelSettings")) {
      out.has_port_level_settings = true;
      ParsePortLevelSettings(*v, ctx);
      ctx.Notice(v->node, v->path,
                 "port-level policies are validated but not applied: sluice uses the "
                 "destination-level policy for every port");
    }
    std::optional<Field> tunnel = m.Get("tunnel");
    std::optional<Field> proxy_protocol = m.Get("proxyProtocol");
    if (tunnel && proxy_protocol) {
      ctx.Error(proxy_protocol->node, proxy_protocol->path, "cannot be set together with tunnel");
    }
    for (const auto& ignored : {tunnel, proxy_protocol}) {
      if (ignored) ctx.Notice(ignored->node, ignored->path, "is not applied by sluice");
    }
    m.Ignore("retryBudget", "retry budgets are not applied by sluice; maxRetries is");
  }
  if (f.node.IsMap() && f.node.size() == (port_level ? 1u : 0u)) {
    ctx.Error(f.node, f.path, "must set at least one field");
  }
  return out;
}

}  // namespace

DestinationRule ParseDestinationRule(ObjectMeta meta, const Field& spec, const ParseContext& ctx) {
  DestinationRule dr;
  dr.meta = std::move(meta);
  MapReader m(spec, ctx);
  if (!m.ok()) return dr;
  if (auto v = m.Get("host")) {
    dr.host = ReadString(*v, ctx).value_or("");
    if (std::string problem = CheckHostName(dr.host, /*allow_wildcard=*/true); !problem.empty()) {
      ctx.Error(v->node, v->path, problem);
    }
  } else {
    ctx.Error(spec.node, JoinPath(spec.path, "host"), "is required");
  }
  if (auto v = m.Get("trafficPolicy")) dr.traffic_policy = ParseTrafficPolicy(*v, ctx, false);
  if (auto v = m.Get("subsets")) {
    std::set<std::string> names;
    ForEachItem(*v, ctx, [&](const Field& item, size_t) {
      Subset subset;
      subset.path = item.path;
      subset.location = ctx.At(item.node);
      MapReader sm(item, ctx);
      if (auto n = sm.Get("name")) {
        subset.name = ReadString(*n, ctx).value_or("");
        if (!IsDns1123Label(subset.name)) {
          ctx.Error(n->node, n->path,
                    absl::StrCat("\"", subset.name, "\" is not a valid DNS-1123 label"));
        } else if (!names.insert(subset.name).second) {
          ctx.Error(n->node, n->path, absl::StrCat("duplicate subset \"", subset.name, "\""));
        }
      } else if (sm.ok()) {
        ctx.Error(item.node, JoinPath(item.path, "name"), "is required");
      }
      if (auto l = sm.Get("labels")) subset.labels = ReadStringMap(*l, ctx);
      if (auto p = sm.Get("trafficPolicy")) {
        subset.traffic_policy = ParseTrafficPolicy(*p, ctx, false);
      }
      dr.subsets.push_back(std::move(subset));
    });
  }
  m.Ignore("exportTo");
  m.Ignore("workloadSelector",
           "workloadSelector scopes a DestinationRule to sidecars; sluice applies it everywhere");
  return dr;
}

}  // namespace sluice::config
