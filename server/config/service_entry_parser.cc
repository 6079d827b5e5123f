#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/config/host_names.h"
#include "server/config/parsers.h"

namespace sluice::config {

WorkloadEntrySpec ParseWorkloadEntrySpec(const Field& f, const ParseContext& ctx) {
  WorkloadEntrySpec out;
  out.path = f.path;
  out.location = ctx.At(f.node);
  MapReader m(f, ctx);
  if (!m.ok()) return out;
  if (auto v = m.Get("address")) {
    out.address = ReadString(*v, ctx).value_or("");
    if (out.address.empty()) ctx.Error(v->node, v->path, "must not be empty");
  }
  if (auto v = m.Get("ports")) {
    ForEachEntry(*v, ctx, [&](const std::string& name, const Field& value) {
      if (auto port = ReadInt(value, ctx, 1, 65535)) {
        out.ports.emplace_back(name, static_cast<uint32_t>(*port));
      }
    });
  }
  if (auto v = m.Get("labels")) out.labels = ReadStringMap(*v, ctx);
  if (auto v = m.Get("network")) out.network = ReadString(*v, ctx).value_or("");
  if (auto v = m.Get("locality")) out.locality = ReadString(*v, ctx).value_or("");
  if (auto v = m.Get("weight")) {
    out.weight = static_cast<uint32_t>(ReadInt(*v, ctx, 0, UINT32_MAX).value_or(0));
  }
  m.Ignore("serviceAccount");
  return out;
}

WorkloadEntry ParseWorkloadEntry(ObjectMeta meta, const Field& spec, const ParseContext& ctx) {
  WorkloadEntry we;
  we.meta = std::move(meta);
  we.spec = ParseWorkloadEntrySpec(spec, ctx);
  if (we.spec.address.empty() && spec.node.IsMap()) {
    ctx.Error(spec.node, JoinPath(spec.path, "address"), "is required");
  }
  return we;
}

ServiceEntry ParseServiceEntry(ObjectMeta meta, const Field& spec, const ParseContext& ctx) {
  ServiceEntry se;
  se.meta = std::move(meta);
  MapReader m(spec, ctx);
  if (!m.ok()) return se;
  if (auto v = m.Get("hosts")) {
    ForEachItem(*v, ctx, [&](const Field& item, size_t) {
      std::optional<std::string> host = ReadString(item, ctx);
      if (!host) return;
      if (*host == "*") {
        ctx.Error(item.node, item.path, "wildcard host * is not allowed in a ServiceEntry");
      } else if (std::string problem = CheckHostName(*host, /*allow_wildcard=*/true);
                 !problem.empty()) {
        ctx.Error(item.node, item.path, problem);
      }
      se.hosts.push_back(*host);
    });
  }
  if (se.hosts.empty()) ctx.Error(spec.node, JoinPath(spec.path, "hosts"), "is required");
  if (auto v = m.Get("addresses")) se.addresses = ReadStringList(*v, ctx);
  if (auto v = m.Get("ports")) {
    std::set<uint32_t> numbers;
    std::set<std::string> names;
    ForEachItem(*v, ctx, [&](const Field& item, size_t) {
      ServicePort port;
      MapReader pm(item, ctx);
      if (auto n = pm.Get("number")) {
        port.number = static_cast<uint32_t>(ReadInt(*n, ctx, 1, 65535).value_or(0));
        if (port.number != 0 && !numbers.insert(port.number).second) {
          ctx.Error(n->node, n->path, absl::StrCat("duplicate port ", port.number));
        }
      } else if (pm.ok()) {
        ctx.Error(item.node, JoinPath(item.path, "number"), "is required");
      }
      if (auto p = pm.Get("protocol")) port.protocol = ReadString(*p, ctx).value_or("");
      if (auto p = pm.Get("name")) {
        port.name = ReadString(*p, ctx).value_or("");
        if (!IsDns1123Label(port.name)) {
          ctx.Error(p->node, p->path,
                    absl::StrCat("\"", port.name, "\" is not a valid port name (DNS-1123 label)"));
        } else if (!names.insert(port.name).second) {
          ctx.Error(p->node, p->path, absl::StrCat("duplicate port name \"", port.name, "\""));
        }
      } else if (pm.ok()) {
        ctx.Error(item.node, JoinPath(item.path, "name"), "is required");
      }
      if (auto p = pm.Get("targetPort")) {
        if (auto t = ReadInt(*p, ctx, 1, 65535)) port.target_port = static_cast<uint32_t>(*t);
      }
      se.ports.push_back(std::move(port));
    });
  }
  if (auto v = m.Get("location")) {
    se.location = ReadString(*v, ctx).value_or("");
    if (se.location != "MESH_EXTERNAL" && se.location != "MESH_INTERNAL") {
      ctx.Error(v->node, v->path, "must be MESH_EXTERNAL or MESH_INTERNAL");
    }
  }
  std::optional<Field> resolution = m.Get("resolution");
  if (resolution) {
    const Field* v = &*resolution;
    std::string r = ReadString(*v, ctx).value_or("");
    if (r == "NONE") {
      se.resolution = ServiceEntry::Resolution::kNone;
    } else if (r == "STATIC") {
      se.resolution = ServiceEntry::Resolution::kStatic;
    } else if (r == "DNS") {
      se.resolution = ServiceEntry::Resolution::kDns;
    } else if (r == "DNS_ROUND_ROBIN") {
      se.resolution = ServiceEntry::Resolution::kDnsRoundRobin;
    } else {
      ctx.Error(v->node, v->path, "must be NONE, STATIC, DNS or DNS_ROUND_ROBIN");
    }
  }
  if (!resolution && m.Has("endpoints")) se.resolution = ServiceEntry::Resolution::kStatic;
  std::optional<Field> endpoints = m.Get("endpoints");
  if (endpoints) {
    ForEachItem(*endpoints, ctx, [&](const Field& item, size_t) {
      WorkloadEntrySpec ep = ParseWorkloadEntrySpec(item, ctx);
      if (ep.address.empty() && item.node.IsMap()) {
        ctx.Error(item.node, JoinPath(item.path, "address"), "is required");
      }
      // Const access: yaml-cpp's non-const operator[] inserts missing keys.
      const YAML::Node ports = item.node.IsMap() ? std::as_const(item.node)["ports"] : YAML::Node();
      if (ports.IsDefined() && ports.IsMap()) {
        for (const auto& kv : ports) {
          const std::string name = kv.first.Scalar();
          bool known = false;
          for (const ServicePort& p : se.ports) known = known || p.name == name;
          if (!known) {
            ctx.Error(kv.first, JoinPath(JoinPath(item.path, "ports"), name),
                      "names no port of this ServiceEntry");
          }
        }
      }
      if (se.resolution == ServiceEntry::Resolution::kStatic && !ep.address.empty() &&
          !IsIpAddress(ep.address) && ep.address.rfind("unix://", 0) != 0) {
        ctx.Error(item.node, JoinPath(item.path, "address"),
                  absl::StrCat("\"", ep.address,
                               "\" is not an IP address (STATIC resolution needs one)"));
      }
      se.endpoints.push_back(std::move(ep));
    });
  }
  if (auto v = m.Get("workloadSelector")) {
    MapReader wm(*v, ctx);
    if (auto l = wm.Get("labels")) se.workload_selector = ReadStringMap(*l, ctx);
    if (!se.workload_selector) se.workload_selector = Labels{};
    if (endpoints) {
      ctx.Error(v->node, v->path, "cannot be set together with endpoints");
    }
  }
  // Istio's default resolution is NONE, which takes no endpoints. sluice is lenient about an
  // omitted resolution (it then means STATIC) but not about an explicit NONE.
  if (resolution && se.resolution == ServiceEntry::Resolution::kNone && endpoints &&
      !se.endpoints.empty()) {
    ctx.Error(endpoints->node, endpoints->path,
              "resolution NONE takes no endpoints; use STATIC for a fixed list of addresses");
  }
  m.Ignore("exportTo");
  m.Ignore("subjectAltNames");
  return se;
}

}  // namespace sluice::config
