#include "server/config/loader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/config/host_names.h"
#include "server/config/parsers.h"
#include "server/config/validation.h"
#include "server/config/yaml_reader.h"

namespace sluice::config {
namespace {

constexpr absl::string_view kIstioGroup = "networking.istio.io";
constexpr absl::string_view kSluiceGroup = "sluice.dev";

bool IsIstioVersion(absl::string_view v) { return v == "v1alpha3" || v == "v1beta1" || v == "v1"; }

bool IsSkippedIstioKind(absl::string_view kind) {
  return kind == "Gateway" || kind == "Sidecar" || kind == "WorkloadGroup" ||
         kind == "EnvoyFilter" || kind == "ProxyConfig";
}

std::optional<ObjectMeta> ParseMetadata(const Field& doc, MapReader& top,
                                        const ParseContext& ctx) {
  ObjectMeta meta;
  meta.location = ctx.At(doc.node);
  std::optional<Field> f = top.Get("metadata");
  if (!f) {
    ctx.Error(doc.node, "metadata.name", "is required");
    return std::nullopt;
  }
  MapReader m(*f, ctx);
  if (!m.ok()) return std::nullopt;
  if (auto v = m.Get("name")) {
    meta.name = ReadString(*v, ctx).value_or("");
    if (!IsDns1123Subdomain(meta.name)) {
      ctx.Error(v->node, v->path,
                absl::StrCat("\"", meta.name,
                             "\" is not a valid name (lower-case DNS-1123 subdomain)"));
    }
  } else {
    ctx.Error(f->node, "metadata.name", "is required");
  }
  if (auto v = m.Get("namespace")) {
    meta.namespace_name = ReadString(*v, ctx).value_or("default");
    if (!IsDns1123Label(meta.namespace_name)) {
      ctx.Error(v->node, v->path, "is not a valid namespace (DNS-1123 label)");
    }
  }
  if (auto v = m.Get("labels")) meta.labels = ReadStringMap(*v, ctx);
  if (auto v = m.Get("annotations")) ReadStringMap(*v, ctx);
  // Written by the Kubernetes API server; present in `kubectl get -o yaml` output.
  for (const char* k : {"uid", "resourceVersion", "generation", "creationTimestamp",
                        "managedFields", "ownerReferences", "finalizers", "generateName",
                        "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}) {
    m.Ignore(k);
  }
  return meta;
}

void ParseDocument(const Field& doc, const ParseContext& ctx, ConfigSet& out);

void ParseList(MapReader& top, const ParseContext& ctx, ConfigSet& out) {
  top.Ignore("metadata");
  if (auto items = top.Get("items")) {
    ForEachItem(*items, ctx, [&](const Field& item, size_t) { ParseDocument(item, ctx, out); });
  }
}

void ParseDocument(const Field& doc, const ParseContext& ctx, ConfigSet& out) {
  if (!doc.node.IsDefined() || doc.node.IsNull()) return;  // empty document, e.g. after `---`
  MapReader top(doc, ctx);
  if (!top.ok()) return;
  std::optional<Field> api = top.Get("apiVersion");
  std::optional<Field> kind_field = top.Get("kind");
  if (!api || !kind_field) {
    ctx.Error(doc.node, JoinPath(doc.path, api ? "kind" : "apiVersion"), "is required");
    return;
  }
  const std::string api_version = ReadString(*api, ctx).value_or("");
  const std::string kind = ReadString(*kind_field, ctx).value_or("");
  top.Ignore("status");
  if (kind == "List" && api_version == "v1") {
    ParseList(top, ctx, out);
    return;
  }
  std::vector<std::string> parts = absl::StrSplit(api_version, absl::MaxSplits('/', 1));
  const std::string group = parts.size() == 2 ? parts[0] : "";
  const std::string version = parts.size() == 2 ? parts[1] : parts[0];

  auto skip = [&](absl::string_view why) {
    top.Ignore("metadata");
    top.Ignore("spec");
    top.Ignore("data");
    for (const auto& kv : doc.node) top.Ignore(kv.first.Scalar());
    ctx.Notice(doc.node, "", absl::StrCat("skipping ", kind, " (", api_version, "): ", why));
  };

  if (group == kIstioGroup) {
    if (!IsIstioVersion(version)) {
      ctx.Error(api->node, JoinPath(doc.path, "apiVersion"),
                absl::StrCat("unsupported version \"", api_version,
                             "\" (expected v1alpha3, v1beta1 or v1)"));
      return;
    }
    if (IsSkippedIstioKind(kind)) {
      skip("not used by sluice");
      return;
    }
    if (kind != "VirtualService" && kind != "DestinationRule" && kind != "ServiceEntry" &&
        kind != "WorkloadEntry") {
      ctx.Error(kind_field->node, JoinPath(doc.path, "kind"),
                absl::StrCat("unknown kind \"", kind, "\" in ", kIstioGroup));
      return;
    }
  } else if (group == kSluiceGroup) {
    if (version != "v1") {
      ctx.Error(api->node, JoinPath(doc.path, "apiVersion"),
                absl::StrCat("unsupported version \"", api_version, "\" (expected v1)"));
      return;
    }
    if (kind != "Canary") {
      ctx.Error(kind_field->node, JoinPath(doc.path, "kind"),
                absl::StrCat("unknown kind \"", kind, "\" in sluice.dev (expected Canary)"));
      return;
    }
  } else {
    skip("not a traffic resource sluice reads");
    return;
  }

  std::optional<ObjectMeta> meta = ParseMetadata(doc, top, ctx);
  std::optional<Field> spec = top.Get("spec");
  if (!spec) {
    ctx.Error(doc.node, JoinPath(doc.path, "spec"), "is required");
    return;
  }
  if (!meta) return;
  if (kind == "VirtualService") {
    out.virtual_services.push_back(ParseVirtualService(*meta, *spec, ctx));
  } else if (kind == "DestinationRule") {
    out.destination_rules.push_back(ParseDestinationRule(*meta, *spec, ctx));
  } else if (kind == "ServiceEntry") {
    out.service_entries.push_back(ParseServiceEntry(*meta, *spec, ctx));
  } else if (kind == "WorkloadEntry") {
    out.workload_entries.push_back(ParseWorkloadEntry(*meta, *spec, ctx));
  } else if (kind == "Canary") {
    out.canaries.push_back(ParseCanary(*meta, *spec, ctx));
  }
}

bool IsYamlFile(const std::filesystem::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml";
}

}  // namespace

void ParseYaml(absl::string_view text, const std::string& file_name, ConfigSet& out,
               Diagnostics& diagnostics) {
  ParseContext ctx{file_name, &diagnostics};
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    SourceLocation where{file_name, e.mark.line >= 0 ? e.mark.line + 1 : 0};
    diagnostics.Error(where, "", absl::StrCat("invalid YAML: ", e.msg));
    return;
  }
  // Resources are only kept when their own document parsed cleanly, so that a change with
  // errors never half-applies even inside sluice's own tooling.
  for (const YAML::Node& doc : docs) {
    try {
      ParseDocument(Field{doc, ""}, ctx, out);
    } catch (const YAML::Exception& e) {
      SourceLocation where{file_name, e.mark.line >= 0 ? e.mark.line + 1 : 0};
      diagnostics.Error(where, "", absl::StrCat("invalid YAML: ", e.msg));
    }
  }
}

LoadResult LoadText(absl::string_view text, absl::string_view file_name) {
  LoadResult result;
  ParseYaml(text, std::string(file_name), result.config, result.diagnostics);
  ValidateConfigSet(result.config, result.diagnostics);
  return result;
}

LoadResult LoadPaths(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  LoadResult result;
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(path, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file() && IsYamlFile(it->path())) found.push_back(it->path().string());
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) {
        result.diagnostics.Warning({path, 0}, "", "folder holds no .yaml or .yml files");
      }
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(path, ec)) {
      files.push_back(path);
    } else {
      result.diagnostics.Error({path, 0}, "", "no such file or folder");
    }
  }
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      result.diagnostics.Error({file, 0}, "", "cannot be read");
      continue;
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    ParseYaml(buffer.str(), file, result.config, result.diagnostics);
  }
  ValidateConfigSet(result.config, result.diagnostics);
  return result;
}

}  // namespace sluice::config
